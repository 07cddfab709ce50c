// GatewayClient against a scripted grpc-js server speaking gateway.v1: retries, the bearer key, TLS.
// The server fails on cue (which a real gateway cannot be made to do on demand).
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  GatewayClient,
  LOADER_OPTIONS,
  PROTO_PATH,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnavailableError,
  type Result,
} from "../src";
import type { ProtoGrpcType } from "../src/generated/gateway";
import type { GenerateRequest__Output } from "../src/generated/gateway/v1/GenerateRequest";
import type { InferenceGatewayHandlers } from "../src/generated/gateway/v1/InferenceGateway";

interface Failure {
  code: grpc.status;
  details: string;
  trailing?: Record<string, string>;
}

class Scripted {
  failures: Failure[] = [];
  calls: Array<{ method: string; authorization: string | undefined }> = [];

  count(method: string): number {
    return this.calls.filter((c) => c.method === method).length;
  }

  handlers(): InferenceGatewayHandlers {
    const answer = (request: GenerateRequest__Output) => ({
      requestId: request.requestId || "scripted-id",
      text: request.messages.at(-1)?.content ?? "",
      tier: "TIER_LOCAL" as const,
      provider: "scripted",
      model: "scripted",
      confidence: 0.5,
      usage: { promptTokens: 1, completionTokens: 1 },
    });
    return {
      Generate: (call, callback) => {
        const failure = this.enter("Generate", call.metadata);
        if (failure) callback(failure);
        else callback(null, answer(call.request));
      },
      GenerateStream: (call) => {
        const failure = this.enter("GenerateStream", call.metadata);
        if (failure) {
          call.emit("error", failure);
          return;
        }
        call.write({ text: "first " });
        call.write({ final: answer(call.request) });
        call.end();
      },
      GenerateBatch: (call, callback) => {
        const failure = this.enter("GenerateBatch", call.metadata);
        if (failure) callback(failure);
        else callback(null, { responses: call.request.requests.map(answer) });
      },
      ListModels: (call, callback) => {
        const failure = this.enter("ListModels", call.metadata);
        if (failure) callback(failure);
        else callback(null, { models: [{ name: "scripted", tier: "TIER_LOCAL", provider: "scripted" }] });
      },
      GetUsage: (call, callback) => {
        const failure = this.enter("GetUsage", call.metadata);
        if (failure) callback(failure);
        else callback(null, { day: "2026-01-02" });
      },
    };
  }

  private enter(method: string, metadata: grpc.Metadata): Partial<grpc.StatusObject> | null {
    this.calls.push({ method, authorization: metadata.get("authorization")[0]?.toString() });
    const failure = this.failures.shift();
    if (failure === undefined) return null;
    const trailing = new grpc.Metadata();
    for (const [key, value] of Object.entries(failure.trailing ?? {})) trailing.set(key, value);
    return { code: failure.code, details: failure.details, metadata: trailing };
  }
}

async function serve(scripted: Scripted, credentials = grpc.ServerCredentials.createInsecure()): Promise<[grpc.Server, string]> {
  const proto = grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_PATH, LOADER_OPTIONS)) as unknown as ProtoGrpcType;
  const server = new grpc.Server();
  server.addService(proto.gateway.v1.InferenceGateway.service, scripted.handlers());
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return [server, `127.0.0.1:${port}`];
}

const UNAVAILABLE: Failure = { code: grpc.status.UNAVAILABLE, details: "draining" };
const FAST_RETRY = { maxAttempts: 3, initialBackoffMs: 10, maxBackoffMs: 50 };

describe("GatewayClient on the wire", () => {
  let scripted: Scripted;
  let server: grpc.Server;
  let target: string;

  before(async () => {
    scripted = new Scripted();
    [server, target] = await serve(scripted);
  });

  after(() => server?.forceShutdown());

  test("UNAVAILABLE is retried, then answers", async () => {
    scripted.failures.push(UNAVAILABLE, UNAVAILABLE);
    const client = new GatewayClient(target, { retry: FAST_RETRY });
    const before = scripted.count("Generate");
    assert.equal((await client.generate("buy")).text, "buy");
    assert.equal(scripted.count("Generate") - before, 3);
    client.close();
  });

  test("UNAVAILABLE gives up after maxAttempts", async () => {
    scripted.failures.push(UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, UNAVAILABLE);
    const client = new GatewayClient(target, { retry: FAST_RETRY });
    const before = scripted.count("GenerateBatch");
    await assert.rejects(client.routeBatch(["a", "b"]), (error: unknown) => {
      assert.ok(error instanceof UnavailableError);
      assert.equal(error.details, "draining");
      return true;
    });
    assert.equal(scripted.count("GenerateBatch") - before, 3);
    scripted.failures.length = 0;
    client.close();
  });

  test("other codes are not retried, and carry code, message and trailing metadata", async () => {
    const client = new GatewayClient(target, { retry: FAST_RETRY });
    scripted.failures.push({ code: grpc.status.RESOURCE_EXHAUSTED, details: "budget spent", trailing: { "retry-after": "3600" } });
    const before = scripted.count("Generate");
    await assert.rejects(client.generate("x"), (error: unknown) => {
      assert.ok(error instanceof ResourceExhaustedError);
      assert.equal(error.code, grpc.status.RESOURCE_EXHAUSTED);
      assert.equal(error.codeName, "RESOURCE_EXHAUSTED");
      assert.equal(error.details, "budget spent");
      assert.equal(error.metadata["retry-after"], "3600");
      return true;
    });
    scripted.failures.push({ code: grpc.status.PERMISSION_DENIED, details: "task 'trend' is not allowed" });
    await assert.rejects(client.models(), PermissionDeniedError);
    assert.equal(scripted.count("Generate") - before, 1);
    client.close();
  });

  test("a stream is retried before its first chunk", async () => {
    scripted.failures.push(UNAVAILABLE);
    const client = new GatewayClient(target, { retry: FAST_RETRY });
    const items: Array<string | Result> = [];
    for await (const item of client.generateStream("hello")) items.push(item);
    assert.equal(items[0], "first ");
    assert.equal((items[1] as Result).text, "hello");
    client.close();
  });

  test("the API key travels as a bearer token", async () => {
    const client = new GatewayClient(target, { apiKey: "gk_secret123" });
    const before = scripted.calls.length;
    await client.generate("x");
    await client.usage();
    assert.deepEqual(
      scripted.calls.slice(before).map((c) => c.authorization),
      ["Bearer gk_secret123", "Bearer gk_secret123"],
    );
    client.close();
  });

  test("a malformed API key is refused before any call", () => {
    for (const key of ["", "two words", "line\r\nx-injected: 1"]) {
      assert.throws(() => new GatewayClient(target, { apiKey: key }), /apiKey/);
    }
  });

  test("aborting the signal cancels the call", async () => {
    const client = new GatewayClient(target);
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(client.generate("x", { signal: controller.signal }), /CANCELLED/);
    client.close();
  });
});

function openssl(args: string[], cwd: string): void {
  execFileSync("openssl", args, { cwd, stdio: "pipe" });
}

function makeCertificates(dir: string): void {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test CA"], dir);
  for (const [name, ext] of [
    ["server", "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth"],
    ["client", "extendedKeyUsage=clientAuth"],
  ] as const) {
    fs.writeFileSync(path.join(dir, `${name}.ext`), `${ext}\n`);
    openssl(["req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`], dir);
    openssl(
      ["x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
        .concat(["-out", `${name}.pem`, "-extfile", `${name}.ext`]),
      dir,
    );
  }
}

function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "pipe" });
    return true;
  } catch {
    return false;
  }
}

describe("GatewayClient over TLS", { skip: hasOpenssl() ? false : "openssl not on PATH: cannot make test certificates" }, () => {
  test("mutual TLS answers; a missing client certificate or plaintext does not", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ts-client-tls-"));
    makeCertificates(dir);
    const read = (name: string): Buffer => fs.readFileSync(path.join(dir, name));
    const scripted = new Scripted();
    const credentials = grpc.ServerCredentials.createSsl(read("ca.pem"), [{ private_key: read("server.key"), cert_chain: read("server.pem") }], true);
    const [server, target] = await serve(scripted, credentials);
    try {
      const mutual = new GatewayClient(target, {
        apiKey: "k",
        tls: { rootCa: read("ca.pem"), certChain: read("client.pem"), privateKey: read("client.key") },
      });
      assert.equal((await mutual.generate("over tls")).text, "over tls");
      mutual.close();
      const noCert = new GatewayClient(target, { tls: { rootCa: read("ca.pem") }, retry: { maxAttempts: 1 }, timeoutMs: 10_000 });
      await assert.rejects(noCert.generate("x"), UnavailableError);
      noCert.close();
      const plain = new GatewayClient(target, { retry: { maxAttempts: 1 }, timeoutMs: 10_000 });
      await assert.rejects(plain.generate("x"), UnavailableError);
      plain.close();
      assert.equal(scripted.count("Generate"), 1);
      assert.throws(() => new GatewayClient(target, { tls: { certChain: read("client.pem") } }), /certChain and tls.privateKey/);
    } finally {
      server.forceShutdown();
    }
  });
});
