// Request -> protobuf input, protobuf output -> typed results: pure functions.
import type { GenerateRequest } from "./generated/gateway/v1/GenerateRequest";
import type { GenerateResponse__Output } from "./generated/gateway/v1/GenerateResponse";
import type { GetUsageResponse__Output } from "./generated/gateway/v1/GetUsageResponse";
import type { ListModelsResponse__Output } from "./generated/gateway/v1/ListModelsResponse";
import type { Escalation, ModelInfo, Priority, Privacy, Request, Result, Tier, UsageReport } from "./types";

const PRIORITY: Record<Priority, string> = { normal: "PRIORITY_NORMAL", urgent: "PRIORITY_URGENT" };
const PRIVACY: Record<Privacy, string> = { default: "PRIVACY_DEFAULT", local_only: "PRIVACY_LOCAL_ONLY" };
const TIER: Record<string, Tier> = { TIER_LOCAL: "local", TIER_REMOTE: "remote", TIER_CACHE: "cache" };
const ESCALATION: Record<string, Escalation> = {
  ESCALATION_NONE: "none",
  ESCALATION_LOW_CONFIDENCE: "low_confidence",
  ESCALATION_LOCAL_CAPACITY: "local_capacity",
  ESCALATION_LOCAL_ERROR: "local_error",
  ESCALATION_RULE: "rule",
  ESCALATION_TOOLS: "tools",
};

function choice<K extends string>(table: Record<K, string>, value: K | undefined, fallback: K, field: string): string {
  const key = value ?? fallback;
  const mapped = table[key];
  if (mapped === undefined) {
    throw new TypeError(`${field}: ${JSON.stringify(value)} is not one of ${Object.keys(table).join(", ")}`);
  }
  return mapped;
}

export function requestToProto(request: Request | string): GenerateRequest {
  const r: Request = typeof request === "string" ? { messages: request } : request;
  const messages = typeof r.messages === "string" ? [{ role: "user", content: r.messages }] : r.messages;
  const msg: GenerateRequest = {
    requestId: r.requestId ?? "",
    messages: messages.map((m) => ({ role: m.role, content: m.content })),
    task: r.task ?? "",
    model: r.model ?? "",
    maxTokens: r.maxTokens ?? 0,
    temperature: r.temperature ?? 0,
    priority: choice(PRIORITY, r.priority, "normal", "priority") as GenerateRequest["priority"],
    privacy: choice(PRIVACY, r.privacy, "default", "privacy") as GenerateRequest["privacy"],
    bypassCache: r.bypassCache ?? false,
    tags: { ...(r.tags ?? {}) },
  };
  if (r.minConfidence !== undefined) msg.minConfidence = r.minConfidence;
  return msg;
}

export function resultFromProto(msg: GenerateResponse__Output): Result {
  return {
    requestId: msg.requestId,
    text: msg.text,
    tier: TIER[msg.tier] ?? "unspecified",
    provider: msg.provider,
    model: msg.model,
    confidence: msg.confidence ?? null,
    escalation: ESCALATION[msg.escalation] ?? "unknown",
    usage: { promptTokens: msg.usage?.promptTokens ?? 0, completionTokens: msg.usage?.completionTokens ?? 0 },
    attempts: msg.attempts.map((a) => ({
      provider: a.provider,
      model: a.model,
      outcome: a.outcome,
      latencyMs: a.latencyMs,
      error: a.error,
    })),
    finishReason: msg.finishReason,
    latencyMs: msg.latencyMs,
  };
}

export function modelsFromProto(msg: ListModelsResponse__Output): ModelInfo[] {
  return msg.models.map((m) => ({
    name: m.name,
    tier: TIER[m.tier] ?? "unspecified",
    provider: m.provider,
    task: m.task,
    metrics: { ...m.metrics },
  }));
}

export function usageFromProto(msg: GetUsageResponse__Output): UsageReport {
  const lat = msg.latency;
  return {
    day: msg.day,
    requests: msg.requests,
    providers: msg.providers.map((p) => ({
      provider: p.provider,
      tokensUsed: p.tokensUsed,
      tokenBudget: p.tokenBudget,
      requests: p.requests,
    })),
    requestsByTier: { ...msg.requestsByTier },
    tokensByTier: { ...msg.tokensByTier },
    requestsByProvider: { ...msg.requestsByProvider },
    escalationsByReason: { ...msg.escalationsByReason },
    latency: {
      count: lat?.count ?? 0,
      p50Ms: lat?.p50Ms ?? 0,
      p90Ms: lat?.p90Ms ?? 0,
      p99Ms: lat?.p99Ms ?? 0,
      maxMs: lat?.maxMs ?? 0,
    },
    costUsd: msg.costUsd,
    referenceCostUsd: msg.referenceCostUsd,
    savedUsd: msg.savedUsd,
    referenceProvider: msg.referenceProvider,
    localAccuracy: msg.localAccuracy.map((a) => ({ ...a })),
  };
}
