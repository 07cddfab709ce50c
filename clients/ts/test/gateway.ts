// Starts a real gateway process (`python -m gateway serve`) for the tests and stops it with SIGTERM.
// The Python is $GATEWAY_PYTHON, else the repo's .venv/bin/python.
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

export const REPO_ROOT = path.resolve(__dirname, "..", "..", "..", "..");

export interface Gateway {
  target: string;
  httpUrl: string;
  log(): string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Poll `condition` until it returns true; fail after `timeoutMs`, naming what was awaited. */
export async function waitUntil(condition: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export async function startGateway(configToml: string): Promise<Gateway> {
  const python = process.env.GATEWAY_PYTHON ?? path.join(REPO_ROOT, ".venv", "bin", "python");
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), "ts-client-gateway-"));
  const config = path.join(workdir, "gateway.toml");
  fs.writeFileSync(config, configToml);
  const logPath = path.join(workdir, "gateway.log");
  const logFd = fs.openSync(logPath, "w");
  const [port, httpPort] = [await freePort(), await freePort()];
  const env: NodeJS.ProcessEnv = { ...process.env, PYTHONUNBUFFERED: "1" };
  for (const section of ["BUDGET", "CACHE", "USAGE", "LEARNING"]) {
    env[`GATEWAY__${section}__PATH`] = path.join(workdir, `${section.toLowerCase()}.sqlite3`);
  }
  const args = ["-m", "gateway", "serve", "--config", config, "--port", String(port), "--http-port", String(httpPort)];
  const child: ChildProcess = spawn(python, args, { cwd: REPO_ROOT, env, stdio: ["ignore", logFd, logFd] });
  fs.closeSync(logFd);
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const log = (): string => fs.readFileSync(logPath, "utf8");
  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    await exited;
  };
  try {
    await waitUntil(
      async () => {
        if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}:\n${log().slice(-3000)}`);
        try {
          return (await fetch(`${httpUrl}/healthz`)).status === 200;
        } catch {
          return false;
        }
      },
      120_000,
      "the gateway's /healthz",
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { target: `127.0.0.1:${port}`, httpUrl, log, stop };
}
