/**
 * A real cluster for the tests: redis-server, one game server (the stock
 * `game-server` or `arena-server`, the stock one plus the arena sample) and
 * one gateway (TCP and WebSocket ports) as child processes on free loopback
 * ports, and on request
 * `test-client web` serving the browser arena. The binaries are this
 * checkout's (`cargo build -p ...`, a no-op when current) unless
 * GAMEMESH_BIN_DIR names a directory that holds them.
 */
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { openSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");

/** The cargo package of each binary the tests run. */
const PACKAGES = {
  gateway: "gamemesh-gateway",
  "game-server": "gamemesh-game-server",
  "arena-server": "gamemesh-arena",
  "test-client": "gamemesh-test-client",
} as const;
type Binary = keyof typeof PACKAGES;

function binaryDir(binaries: Binary[]): string {
  if (process.env.GAMEMESH_BIN_DIR) return process.env.GAMEMESH_BIN_DIR;
  const packages = binaries.flatMap((b) => ["-p", PACKAGES[b]]);
  execFileSync("cargo", ["build", "-q", ...packages], { cwd: REPO, stdio: "inherit" });
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

export async function waitUntil(what: string, condition: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * The scheduler state (R, S, T, ...) of each thread of `pid`, from
 * /proc/<pid>/task/<tid>/stat; ["gone"] when the process is gone.
 */
function threadStates(pid: number | undefined): string[] {
  try {
    // "tid (comm) S ...": comm may hold spaces and parentheses, so the
    // state is the first field after the last ')'.
    return readdirSync(`/proc/${pid}/task`).map((tid) => {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 1).trim()[0] ?? "?";
    });
  } catch {
    return ["gone"];
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

export interface ClusterOptions {
  /** Which game server to run (default "game-server"). */
  gameServer?: "game-server" | "arena-server";
  /** Build and be ready to run `test-client web` (Cluster.serveWeb). */
  web?: boolean;
}

export class Cluster {
  private constructor(
    readonly clientPort: number,
    /** The gateway's WebSocket port (`--ws-port`). */
    readonly wsPort: number,
    /** Where every process's log goes. */
    readonly logs: string,
    private readonly bins: string,
    private readonly procs: ChildProcess[],
    private readonly gameServer: ChildProcess,
  ) {}

  static async start(options: ClusterOptions = {}): Promise<Cluster> {
    const server = options.gameServer ?? "game-server";
    const bins = binaryDir(["gateway", server, ...(options.web ? (["test-client"] as const) : [])]);
    const logs = mkdtempSync(path.join(os.tmpdir(), "gamemesh-ts-"));
    const [redis, gsP2p, gsMesh, gwClient, gwP2p, gwAdmin, gwWs] = await freePorts(7);
    const procs: ChildProcess[] = [];
    const run = (name: string, cmd: string, args: string[]) => {
      const out = openSync(path.join(logs, `${name}.log`), "w");
      const p = spawn(cmd, args, { stdio: ["ignore", out, out] });
      procs.push(p);
      return p;
    };
    run("redis", "redis-server", ["--port", `${redis}`, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
    await waitUntil("redis-server accepting", () => accepts(redis));
    const gs = run("game-server", path.join(bins, server), [
      "--node-id", "1", "--p2p-port", `${gsP2p}`, "--mesh-port", `${gsMesh}`, "--admin-port", "0",
      "--redis", `127.0.0.1:${redis}`, "--heartbeat-ms", "200",
    ]);
    run("gateway", path.join(bins, "gateway"), [
      "--node-id", "1", "--client-bind", "127.0.0.1", "--client-port", `${gwClient}`, "--p2p-port", `${gwP2p}`,
      "--admin-port", `${gwAdmin}`, "--game-servers", `127.0.0.1:${gsP2p}`, "--heartbeat-ms", "200",
      "--ws-port", `${gwWs}`,
    ]);
    const cluster = new Cluster(gwClient, gwWs, logs, bins, procs, gs);
    try {
      await waitUntil("the gateway ready (/readyz)", () => ready(gwAdmin));
      await waitUntil(`the gateway's WebSocket port ${gwWs} accepting`, () => accepts(gwWs));
    } catch (err) {
      cluster.stop();
      throw new Error(`${(err as Error).message}; logs in ${logs}`);
    }
    return cluster;
  }

  /**
   * Runs `test-client web` for this cluster's WebSocket port on a free port
   * and resolves with the page's URL, read from the line it prints.
   */
  async serveWeb(dir: string): Promise<string> {
    const p = spawn(path.join(this.bins, "test-client"), ["web", "--gateway-ws", this.wsUrl, "--listen", "127.0.0.1:0", "--dir", dir], {
      stdio: ["ignore", "pipe", openSync(path.join(this.logs, "web.log"), "w")],
    });
    this.procs.push(p);
    return new Promise<string>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`test-client web printed no URL within 10 s: ${out}`)), 10_000);
      p.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        const url = /(https?:\/\/\S+)\r?\n/.exec(out)?.[1]; // a whole line: not cut mid-URL
        if (url) (clearTimeout(timer), resolve(url));
      });
      p.once("exit", (code) => (clearTimeout(timer), reject(new Error(`test-client web exited (${code}); logs in ${this.logs}`))));
    });
  }

  /** ws://127.0.0.1:<wsPort>, what a WebSocket client (or the page) connects to. */
  get wsUrl(): string {
    return `ws://127.0.0.1:${this.wsPort}`;
  }

  /**
   * SIGSTOP, then waits until every thread of the game server has stopped.
   * A signal stops a multi-threaded process one thread at a time, as each
   * is next scheduled: on a busy machine its other threads can still
   * answer a request sent right after kill() returns.
   */
  async pauseGameServer(): Promise<void> {
    this.gameServer.kill("SIGSTOP");
    const pid = this.gameServer.pid;
    await waitUntil("every game-server thread stopped", async () => threadStates(pid).every((s) => s === "T"), 5_000);
  }
  resumeGameServer(): void { this.gameServer.kill("SIGCONT"); }

  stop(): void {
    for (const p of this.procs) { p.kill("SIGCONT"); p.kill("SIGKILL"); }
  }
}
