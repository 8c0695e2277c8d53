/**
 * A real cluster for the tests: redis-server, one game server and one gateway
 * as child processes on free loopback ports. The binaries are this checkout's
 * (`cargo build -p gamemesh-gateway -p gamemesh-game-server`, a no-op when
 * current) unless GAMEMESH_BIN_DIR names a directory that holds them.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { openSync, mkdtempSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");

function binaryDir(): string {
  if (process.env.GAMEMESH_BIN_DIR) return process.env.GAMEMESH_BIN_DIR;
  execFileSync("cargo", ["build", "-q", "-p", "gamemesh-gateway", "-p", "gamemesh-game-server"], { cwd: REPO, stdio: "inherit" });
  return path.join(process.env.CARGO_TARGET_DIR ?? path.join(REPO, "target"), "debug");
}

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<net.Server>((resolve) => { const s = net.createServer(); s.listen(0, "127.0.0.1", () => resolve(s)); })),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

async function waitUntil(what: string, condition: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.once("connect", () => (s.destroy(), resolve(true)));
    s.once("error", () => resolve(false));
  });

const ready = (port: number) =>
  fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.status === 200, () => false);

export class Cluster {
  private constructor(readonly clientPort: number, private readonly procs: ChildProcess[], private readonly gameServer: ChildProcess) {}

  static async start(): Promise<Cluster> {
    const bins = binaryDir();
    const logs = mkdtempSync(path.join(os.tmpdir(), "gamemesh-ts-"));
    const [redis, gsP2p, gsMesh, gwClient, gwP2p, gwAdmin] = await freePorts(6);
    const procs: ChildProcess[] = [];
    const run = (name: string, cmd: string, args: string[]) => {
      const out = openSync(path.join(logs, `${name}.log`), "w");
      const p = spawn(cmd, args, { stdio: ["ignore", out, out] });
      procs.push(p);
      return p;
    };
    run("redis", "redis-server", ["--port", `${redis}`, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    await waitUntil("redis-server accepting", () => accepts(redis));
    const gs = run("game-server", path.join(bins, "game-server"), [
      "--node-id", "1", "--p2p-port", `${gsP2p}`, "--mesh-port", `${gsMesh}`, "--admin-port", "0",
      "--redis", `127.0.0.1:${redis}`, "--heartbeat-ms", "200",
    ]);
    run("gateway", path.join(bins, "gateway"), [
      "--node-id", "1", "--client-bind", "127.0.0.1", "--client-port", `${gwClient}`, "--p2p-port", `${gwP2p}`,
      "--admin-port", `${gwAdmin}`, "--game-servers", `127.0.0.1:${gsP2p}`, "--heartbeat-ms", "200",
    ]);
    const cluster = new Cluster(gwClient, procs, gs);
    try {
      await waitUntil("the gateway ready (/readyz)", () => ready(gwAdmin));
    } catch (err) {
      cluster.stop();
      throw new Error(`${(err as Error).message}; logs in ${logs}`);
    }
    return cluster;
  }

  /** SIGSTOP: the game server answers nothing until resumed. */
  pauseGameServer(): void { this.gameServer.kill("SIGSTOP"); }
  resumeGameServer(): void { this.gameServer.kill("SIGCONT"); }

  stop(): void {
    for (const p of this.procs) { p.kill("SIGCONT"); p.kill("SIGKILL"); }
  }
}
