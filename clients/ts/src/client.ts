// GatewayClient: the gateway's gRPC API over @grpc/grpc-js, with the repo's proto loaded at run time.
import * as path from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { requestToProto, resultFromProto, modelsFromProto, usageFromProto } from "./convert";
import { GatewayError, IncompleteStreamError, fromServiceError } from "./errors";
import type { ProtoGrpcType } from "./generated/gateway";
import type { GenerateBatchRequest } from "./generated/gateway/v1/GenerateBatchRequest";
import type { GenerateBatchResponse__Output } from "./generated/gateway/v1/GenerateBatchResponse";
import type { GenerateRequest } from "./generated/gateway/v1/GenerateRequest";
import type { GenerateResponse__Output } from "./generated/gateway/v1/GenerateResponse";
import type { GetUsageResponse__Output } from "./generated/gateway/v1/GetUsageResponse";
import type { InferenceGatewayClient } from "./generated/gateway/v1/InferenceGateway";
import type { ListModelsResponse__Output } from "./generated/gateway/v1/ListModelsResponse";
import type { ModelInfo, Request, Result, UsageReport } from "./types";

export const DEFAULT_TARGET = "127.0.0.1:50051";
export const DEFAULT_TIMEOUT_MS = 60_000;
/** The proto this package ships (copied from the repo's proto/ at build time). */
export const PROTO_PATH = path.resolve(__dirname, "..", "..", "proto", "gateway", "v1", "gateway.proto");
/** The loader options the generated types (src/generated) were made with: keep them in step. */
export const LOADER_OPTIONS: protoLoader.Options = { longs: Number, enums: String, defaults: true, oneofs: true };

export interface TlsOptions {
  /** PEM of the CA that signed the gateway's certificate; omitted = the system's roots */
  rootCa?: Buffer;
  /** PEM client certificate and key for mutual TLS: both or neither */
  certChain?: Buffer;
  privateKey?: Buffer;
  /** check the certificate against this name instead of the target's host */
  serverName?: string;
}

/** Exponential backoff with jitter on UNAVAILABLE only, within the call's deadline (gRPC's retry policy). */
export interface RetryOptions {
  /** tries in all, the first included (gRPC caps it at 5); 1 = never retry */
  maxAttempts?: number;
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  multiplier?: number;
}

export interface ClientOptions {
  /** sent as `authorization: Bearer <apiKey>` on every call */
  apiKey?: string;
  /** TLS, optionally mutual; omitted = plaintext */
  tls?: TlsOptions;
  /** each call's deadline unless the call gives its own (default 60 s) */
  timeoutMs?: number;
  retry?: RetryOptions;
  /** another copy of gateway.proto (default: the one in this package) */
  protoPath?: string;
  channelOptions?: grpc.ChannelOptions;
}

export interface CallOptions {
  /** this call's deadline, covering its retries */
  timeoutMs?: number;
  /** aborting it cancels the call */
  signal?: AbortSignal;
}

type Unary<Req, Res> = (
  argument: Req,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: grpc.requestCallback<Res>,
) => grpc.ClientUnaryCall;

export class GatewayClient {
  readonly target: string;
  private readonly stub: InferenceGatewayClient;
  private readonly apiKey: string | undefined;
  private readonly timeoutMs: number;

  constructor(target: string = DEFAULT_TARGET, options: ClientOptions = {}) {
    if (options.apiKey !== undefined && !/^[\x21-\x7e]+$/.test(options.apiKey)) {
      throw new TypeError("apiKey: must be non-empty printable ASCII without spaces");
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs: ${timeoutMs} must be above 0`);
    this.target = target;
    this.apiKey = options.apiKey;
    this.timeoutMs = timeoutMs;
    const definition = protoLoader.loadSync(options.protoPath ?? PROTO_PATH, LOADER_OPTIONS);
    const proto = grpc.loadPackageDefinition(definition) as unknown as ProtoGrpcType;
    const channelOptions: grpc.ChannelOptions = {
      ...options.channelOptions,
      "grpc.service_config": JSON.stringify(serviceConfig(options.retry ?? {})),
    };
    if (options.tls?.serverName) {
      channelOptions["grpc.ssl_target_name_override"] = options.tls.serverName;
      channelOptions["grpc.default_authority"] = options.tls.serverName;
    }
    this.stub = new proto.gateway.v1.InferenceGateway(target, credentials(options.tls), channelOptions);
  }

  /** One answer: local first, escalated when the gateway's rules say so. */
  async generate(request: Request | string, options: CallOptions = {}): Promise<Result> {
    const reply = await this.unary<GenerateRequest, GenerateResponse__Output>((a, m, o, cb) => this.stub.Generate(a, m, o, cb), requestToProto(request), options);
    return resultFromProto(reply);
  }

  /** Text deltas as they are generated, then the final Result. Leaving the loop early cancels the call. */
  async *generateStream(request: Request | string, options: CallOptions = {}): AsyncGenerator<string | Result, void> {
    const call = this.stub.GenerateStream(requestToProto(request), this.metadata(), this.callOptions(options));
    const abort = (): void => call.cancel();
    options.signal?.addEventListener("abort", abort, { once: true });
    if (options.signal?.aborted) abort();
    try {
      for await (const chunk of call) {
        if (chunk.final) {
          yield resultFromProto(chunk.final);
          return;
        }
        yield chunk.text;
      }
    } catch (error) {
      throw fromServiceError(error);
    } finally {
      options.signal?.removeEventListener("abort", abort);
      call.cancel(); // a no-op once the call is done
    }
    throw new IncompleteStreamError();
  }

  /** GenerateBatch: one Result per request, in order. One failed item fails the batch (the message says which). */
  async routeBatch(requests: Array<Request | string>, options: CallOptions = {}): Promise<Result[]> {
    const msg = { requests: requests.map(requestToProto) };
    const reply = await this.unary<GenerateBatchRequest, GenerateBatchResponse__Output>((a, m, o, cb) => this.stub.GenerateBatch(a, m, o, cb), msg, options);
    if (reply.responses.length !== requests.length) {
      throw new GatewayError(grpc.status.INTERNAL, `GenerateBatch answered ${reply.responses.length} results for ${requests.length} requests`);
    }
    return reply.responses.map(resultFromProto);
  }

  /** Local models, adapters (with their card's metrics) and provider pins. */
  async models(options: CallOptions = {}): Promise<ModelInfo[]> {
    return modelsFromProto(await this.unary<object, ListModelsResponse__Output>((a, m, o, cb) => this.stub.ListModels(a, m, o, cb), {}, options));
  }

  /** Today's usage, budgets, latency and cost across every replica; `client` = only that API key's requests. */
  async usage(options: CallOptions & { client?: string } = {}): Promise<UsageReport> {
    const msg = { client: options.client ?? "" };
    return usageFromProto(await this.unary<object, GetUsageResponse__Output>((a, m, o, cb) => this.stub.GetUsage(a, m, o, cb), msg, options));
  }

  close(): void {
    this.stub.close();
  }

  private unary<Req, Res>(method: Unary<Req, Res>, argument: Req, options: CallOptions): Promise<Res> {
    return new Promise((resolve, reject) => {
      const call = method(argument, this.metadata(), this.callOptions(options), (error, reply) => {
        options.signal?.removeEventListener("abort", abort);
        if (error) reject(fromServiceError(error));
        else if (reply === undefined) reject(new GatewayError(grpc.status.INTERNAL, "empty reply"));
        else resolve(reply);
      });
      const abort = (): void => call.cancel();
      options.signal?.addEventListener("abort", abort, { once: true });
      if (options.signal?.aborted) abort();
    });
  }

  private metadata(): grpc.Metadata {
    const metadata = new grpc.Metadata();
    if (this.apiKey !== undefined) metadata.set("authorization", `Bearer ${this.apiKey}`);
    return metadata;
  }

  private callOptions(options: CallOptions): grpc.CallOptions {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    if (!(timeoutMs > 0)) throw new RangeError(`timeoutMs: ${timeoutMs} must be above 0`);
    return { deadline: Date.now() + timeoutMs };
  }
}

function credentials(tls: TlsOptions | undefined): grpc.ChannelCredentials {
  if (tls === undefined) return grpc.credentials.createInsecure();
  if ((tls.certChain === undefined) !== (tls.privateKey === undefined)) {
    throw new TypeError("tls.certChain and tls.privateKey: give both for mutual TLS, or neither");
  }
  return grpc.credentials.createSsl(tls.rootCa ?? null, tls.privateKey ?? null, tls.certChain ?? null);
}

function serviceConfig(retry: RetryOptions): object {
  const maxAttempts = retry.maxAttempts ?? 4;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) {
    throw new RangeError(`retry.maxAttempts: ${maxAttempts} must be a whole number, at least 1`);
  }
  if (maxAttempts === 1) return { methodConfig: [] };
  const seconds = (ms: number): string => `${(ms / 1000).toFixed(3)}s`;
  return {
    methodConfig: [
      {
        name: [{ service: "gateway.v1.InferenceGateway" }],
        retryPolicy: {
          maxAttempts,
          initialBackoff: seconds(retry.initialBackoffMs ?? 100),
          maxBackoff: seconds(retry.maxBackoffMs ?? 2000),
          backoffMultiplier: retry.multiplier ?? 2,
          retryableStatusCodes: ["UNAVAILABLE"],
        },
      },
    ],
  };
}
