// What the client sends and gets back: plain typed objects, never protobuf messages.

export type Tier = "local" | "remote" | "cache" | "unspecified";
export type Escalation = "none" | "low_confidence" | "local_capacity" | "local_error" | "rule" | "tools" | "unknown";
export type Priority = "normal" | "urgent";
export type Privacy = "default" | "local_only";

export interface Message {
  role: "system" | "user" | "assistant";
  content: string;
}

/** One request. A plain string stands for one user message. */
export interface Request {
  messages: string | Message[];
  /** selects the LoRA adapter, e.g. "trend"; empty = general */
  task?: string;
  /** optional pin: a local model/adapter name or "provider/model" */
  model?: string;
  /** 0 = the server's default */
  maxTokens?: number;
  temperature?: number;
  priority?: Priority;
  /** "local_only" never leaves the box */
  privacy?: Privacy;
  /** overrides the adapter's calibrated threshold */
  minConfidence?: number;
  bypassCache?: boolean;
  tags?: Record<string, string>;
  /** echoed back; the server makes one when empty */
  requestId?: string;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
}

/** One try at a tier or provider on the way to the answer. */
export interface Attempt {
  provider: string;
  model: string;
  outcome: string;
  latencyMs: number;
  error: string;
}

export interface Result {
  requestId: string;
  text: string;
  tier: Tier;
  provider: string;
  model: string;
  /** local confidence in [0, 1] when a local answer was produced, else null */
  confidence: number | null;
  escalation: Escalation;
  usage: Usage;
  attempts: Attempt[];
  finishReason: string;
  /** inside the gateway */
  latencyMs: number;
}

export interface ModelInfo {
  name: string;
  tier: Tier;
  provider: string;
  task: string;
  metrics: Record<string, number>;
}

export interface ProviderUsage {
  provider: string;
  tokensUsed: number;
  /** 0 = no limit */
  tokenBudget: number;
  requests: number;
}

export interface TaskAccuracy {
  task: string;
  audited: number;
  agreed: number;
  /** NaN before the first audit */
  estimate: number;
  low: number;
  high: number;
  threshold: number;
  target: number;
}

/** Today's figures (UTC day `day`) across every replica sharing the usage store. */
export interface UsageReport {
  day: string;
  requests: number;
  providers: ProviderUsage[];
  requestsByTier: Record<string, number>;
  tokensByTier: Record<string, number>;
  requestsByProvider: Record<string, number>;
  escalationsByReason: Record<string, number>;
  latency: { count: number; p50Ms: number; p90Ms: number; p99Ms: number; maxMs: number };
  costUsd: number;
  referenceCostUsd: number;
  savedUsd: number;
  referenceProvider: string;
  localAccuracy: TaskAccuracy[];
}
