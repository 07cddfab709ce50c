// Calls the gateway's OpenAI-compatible API with the Vercel AI SDK (`ai` with `@ai-sdk/openai`) and prints what
// it saw as one JSON object (read by tests/integration/test_js_clients.py): generateText, streamText and
// structured output (Output.object with a zod schema) through the default model `openai(model)`, which calls
// /v1/responses, and through `openai.chat(model)`, which calls /v1/chat/completions.
// GATEWAY_BASE_URL: the gateway's http://host:port/v1.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, Output, streamText } from "ai";
import { z } from "zod";

const openai = createOpenAI({ baseURL: process.env.GATEWAY_BASE_URL, apiKey: "unused" });
const Trade = z.object({
  signal: z.enum(["buy", "sell", "hold"]),
  size: z.number().min(0).max(1),
  reason: z.string(),
});

async function run(model, label) {
  const seen = {};
  const plain = await generateText({
    model,
    system: "Answer briefly.",
    prompt: `${label} says the trend is up`,
    maxOutputTokens: 32,
    maxRetries: 0,
  });
  seen.generate = { text: plain.text, finishReason: plain.finishReason, usage: plain.usage };

  const streamed = streamText({ model, prompt: `${label} streams the trend`, maxRetries: 0 });
  const pieces = [];
  for await (const piece of streamed.textStream) pieces.push(piece);
  seen.stream = { text: pieces.join(""), pieces: pieces.length, finishReason: await streamed.finishReason };

  const structured = await generateText({
    model,
    prompt: `${label}: BTC fell 3% today, signal?`,
    output: Output.object({ schema: Trade, name: "trade" }),
    maxRetries: 0,
  });
  seen.structured = structured.output;

  const streamedObject = streamText({
    model,
    prompt: `${label}: ETH fell 5% today, signal?`,
    output: Output.object({ schema: Trade, name: "trade" }),
    maxRetries: 0,
  });
  for await (const _ of streamedObject.partialOutputStream);
  seen.streamedStructured = await streamedObject.output;
  return seen;
}

const out = {
  responses: await run(openai("gpt-4o-mini"), "responses"),
  chat: await run(openai.chat("gpt-4o-mini"), "chat"),
};
process.stdout.write(JSON.stringify(out));
