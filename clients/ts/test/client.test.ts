// GatewayClient against a real gateway process with the echo backend.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { status } from "@grpc/grpc-js";
import { CancelledError, DeadlineExceededError, GatewayClient, InvalidArgumentError, type Result } from "../src";
import { startGateway, waitUntil, type Gateway } from "./gateway";

// Each answer takes 100 ms, so a 20 ms deadline always passes first; the echo backend gives the capacity
// check no estimate, so the call is admitted and its deadline passes mid-work (not refused up front).
const ECHO = `
[local]
backend = "echo"

[local.echo]
delay_ms = 100
report_delay = false

[cache]
enabled = false
`;

describe("GatewayClient against a real gateway", () => {
  let gateway: Gateway;
  let client: GatewayClient;

  before(async () => {
    gateway = await startGateway(ECHO);
    client = new GatewayClient(gateway.target, { timeoutMs: 30_000 });
  });

  after(async () => {
    client?.close();
    await gateway?.stop();
  });

  test("generate returns a typed result", async () => {
    const result = await client.generate({
      messages: [
        { role: "system", content: "be brief" },
        { role: "user", content: "buy 100 AAPL" },
      ],
      privacy: "local_only",
      requestId: "r-1",
    });
    assert.equal(result.text, "buy 100 AAPL");
    assert.deepEqual([result.requestId, result.tier, result.provider, result.model], ["r-1", "local", "echo", "echo"]);
    assert.equal(result.escalation, "none");
    assert.ok(result.confidence !== null && Math.abs(result.confidence - 1) < 1e-6);
    assert.equal(result.usage.completionTokens, 3);
    assert.equal(result.attempts[0]?.provider, "echo");
    assert.ok(result.latencyMs > 0);
  });

  test("generateStream yields deltas then the result", async () => {
    const items: Array<string | Result> = [];
    for await (const item of client.generateStream("one two three")) items.push(item);
    const final = items.pop();
    assert.deepEqual(items, ["one", " two", " three"]);
    assert.ok(typeof final === "object" && final.text === "one two three" && final.tier === "local");
  });

  test("routeBatch answers in request order", async () => {
    const results = await client.routeBatch(["first", { messages: "second", task: "" }, "third"]);
    assert.deepEqual(
      results.map((r) => r.text),
      ["first", "second", "third"],
    );
  });

  test("bad input is an InvalidArgumentError naming the field", async () => {
    await assert.rejects(client.generate({ messages: "x", temperature: 9 }), (error: unknown) => {
      assert.ok(error instanceof InvalidArgumentError);
      assert.equal(error.code, status.INVALID_ARGUMENT);
      assert.match(error.details, /temperature/);
      return true;
    });
    await assert.rejects(client.routeBatch(["ok", { messages: "x", minConfidence: 2 }]), /requests\[1\]\.min_confidence/);
    await assert.rejects(client.generate({ messages: [] }), InvalidArgumentError);
    await assert.rejects(client.generate({ messages: "x", priority: "fast" as "urgent" }), /priority/);
  });

  test("the deadline ends the call", async () => {
    await assert.rejects(client.generate("too slow", { timeoutMs: 20 }), DeadlineExceededError);
    await assert.rejects(async () => {
      for await (const _ of client.generateStream("one two three four", { timeoutMs: 20 })) {
        // the deadline passes first
      }
    }, DeadlineExceededError);
  });

  test("aborting a call or leaving a stream early cancels it", async () => {
    const controller = new AbortController();
    const pending = client.generate("slow answer", { signal: controller.signal });
    controller.abort();
    await assert.rejects(pending, CancelledError);
    const seen: Array<string | Result> = [];
    for await (const item of client.generateStream("one two three four five six")) {
      seen.push(item);
      break;
    }
    assert.deepEqual(seen, ["one"]);
    assert.equal((await client.generate("still serving")).text, "still serving");
  });

  test("models and usage", async () => {
    const models = await client.models();
    assert.ok(models.some((m) => m.name === "echo" && m.tier === "local"));
    await client.generate("counted");
    await waitUntil(async () => ((await client.usage()).requestsByTier.local ?? 0) >= 1, 15_000, "usage to count a local answer");
    const usage = await client.usage();
    assert.match(usage.day, /^\d{4}-\d{2}-\d{2}$/);
    assert.ok(usage.requests >= 1 && usage.latency.count >= 1);
    assert.ok(Array.isArray(usage.providers));
    assert.equal((await client.usage({ client: "nobody" })).requests, 0);
  });
});
