/**
 * The browser arena: a login form, the board on a canvas, arrow keys to
 * move, the other players live, a status line with the tick. It talks to a
 * gateway's WebSocket port with the TypeScript library; `test-client web`
 * serves it with a config.json that names that port (`?ws=` overrides it).
 *
 * What the canvas shows is also kept in `window.arenaView` and in the
 * canvas's data-tick / data-players attributes, updated right after each
 * draw, so a test can wait for "the other page drew the move" instead of
 * sleeping.
 */
import { Client, webSocketTransport, type GameMeshError } from "../src/index.js";
import { ArenaPlayer, BOARD, boardView, type BoardView, type Direction } from "./arena.js";
import type { State } from "./gen/arena_pb.js";

/** Pixels per board cell. */
const CELL = 7;
const KEYS: Record<string, Direction> = { ArrowUp: "up", ArrowDown: "down", ArrowLeft: "left", ArrowRight: "right" };

interface Config {
  /** The gateway's WebSocket URL, e.g. ws://127.0.0.1:5100. */
  gatewayWs: string;
}

/** Everything the page shows, for people (the status line) and tests (window.arenaView). */
interface ArenaView extends Partial<BoardView> {
  status: "idle" | "connecting" | "playing" | "closed";
  userId?: string;
  message?: string;
  you?: { x: number; y: number };
}

declare global {
  interface Window {
    arenaView: ArenaView;
  }
}

const el = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const form = el<HTMLFormElement>("login");
const userInput = el<HTMLInputElement>("user");
const roomInput = el<HTMLInputElement>("room");
const leaveButton = el<HTMLButtonElement>("leave");
const canvas = el<HTMLCanvasElement>("board");
const statusLine = el<HTMLDivElement>("status");
const ctx = canvas.getContext("2d")!;
canvas.width = canvas.height = BOARD * CELL;

let session: { client: Client; player: ArenaPlayer } | undefined;
let view: ArenaView = { status: "idle" };

function show(next: ArenaView): void {
  view = next;
  window.arenaView = view;
  canvas.dataset.tick = String(view.tick ?? "");
  canvas.dataset.players = (view.players ?? []).map((p) => `${p.userId}:${p.x},${p.y}`).join(" ");
  canvas.dataset.status = view.status;
  statusLine.textContent = statusText(view);
  form.hidden = view.status === "playing" || view.status === "connecting";
  leaveButton.hidden = view.status !== "playing";
}

function statusText(v: ArenaView): string {
  switch (v.status) {
    case "idle":
      return "Pick a user id and a room, then join.";
    case "connecting":
      return `Connecting as user-${v.userId}...`;
    case "closed":
      return `Disconnected: ${v.message ?? "left"}`;
    case "playing": {
      const you = v.players?.find((p) => p.userId === v.userId) ?? v.you;
      const where = you ? `you at (${you.x}, ${you.y})` : "you are not on the board yet";
      return `user-${v.userId} in room ${v.room} | tick ${v.tick ?? "-"} | ${v.players?.length ?? 0} player(s) | ${where}${v.message ? ` | ${v.message}` : ""}`;
    }
  }
}

function draw(state?: State): void {
  ctx.fillStyle = "#101418";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#1e262e";
  for (let i = 0; i <= BOARD; i += 10) {
    ctx.beginPath();
    ctx.moveTo(i * CELL, 0);
    ctx.lineTo(i * CELL, canvas.height);
    ctx.moveTo(0, i * CELL);
    ctx.lineTo(canvas.width, i * CELL);
    ctx.stroke();
  }
  if (!state) return;
  ctx.font = "11px sans-serif";
  for (const p of state.players) {
    const mine = p.userId.toString() === view.userId;
    ctx.fillStyle = mine ? "#ffcc33" : colourOf(p.userId);
    const [cx, cy] = [p.x * CELL + CELL / 2, p.y * CELL + CELL / 2];
    ctx.beginPath();
    ctx.arc(cx, cy, CELL * 0.9, 0, 2 * Math.PI);
    ctx.fill();
    ctx.fillText(mine ? "you" : `user-${p.userId}`, Math.min(cx + CELL + 2, canvas.width - 60), Math.max(cy + 4, 10));
  }
}

/** A stable colour per user, so a player keeps its colour from tick to tick. */
function colourOf(userId: bigint): string {
  return `hsl(${Number(userId % 360n) * 47 % 360}, 70%, 60%)`;
}

async function config(): Promise<Config> {
  const override = new URLSearchParams(location.search).get("ws");
  if (override) return { gatewayWs: override };
  const reply = await fetch("config.json");
  if (!reply.ok) throw new Error(`config.json: HTTP ${reply.status} (open the page with ?ws=ws://host:port)`);
  return (await reply.json()) as Config;
}

/** A login token from the server that serves the page (test-client web mints one), else "dev". */
async function tokenFor(userId: bigint): Promise<string> {
  const reply = await fetch(`token?user=${userId}`).catch(() => undefined);
  return reply?.ok ? (await reply.text()).trim() : "dev";
}

async function join(userId: bigint, room: string): Promise<void> {
  show({ status: "connecting", userId: userId.toString(), room });
  const { gatewayWs } = await config();
  const client = await Client.connect(webSocketTransport(gatewayWs), { userId, token: await tokenFor(userId) });
  const player = new ArenaPlayer(client);
  session = { client, player };
  player.onState((state) => {
    draw(state);
    show({ ...view, ...boardView(state) });
  });
  client.on("closed", (reason: GameMeshError) => ended(client, reason.message));
  client.on("resumed", () => show({ ...view, message: "resumed after a dropped connection" }));
  const joined = await player.join(room);
  show({ ...view, status: "playing", room: joined.room, you: { x: joined.x, y: joined.y } });
}

/** The session is over (left, kicked, lost): the board empties, the form comes back. */
function ended(client: Client, message: string): void {
  if (session?.client !== client) return;
  session.player.dispose();
  session = undefined;
  draw();
  show({ ...view, status: "closed", message, tick: undefined, players: [] });
}

async function move(direction: Direction): Promise<void> {
  if (!session || view.status !== "playing") return;
  try {
    const you = await session.player.move(direction);
    show({ ...view, you, message: undefined });
  } catch (err) {
    show({ ...view, message: `move refused: ${(err as Error).message}` });
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const typed = userInput.value.replace(/^user-/, "").trim();
  const joining = /^[1-9][0-9]*$/.test(typed)
    ? join(BigInt(typed), roomInput.value.trim())
    : Promise.reject(new Error(`the user id must be a number above 0 (got "${userInput.value}")`));
  joining.catch((err: Error) => {
    session?.client.close().catch(() => undefined);
    session = undefined;
    show({ ...view, status: "closed", message: err.message });
  });
});

leaveButton.addEventListener("click", () => {
  const current = session;
  if (!current) return;
  ended(current.client, "left the room"); // first, so the client's own "closed" event is ignored
  void current.player
    .leave()
    .catch(() => undefined)
    .then(() => current.client.close({ logout: true }));
});

document.addEventListener("keydown", (event) => {
  const direction = KEYS[event.key];
  if (!direction || event.target instanceof HTMLInputElement) return;
  event.preventDefault();
  void move(direction);
});

const params = new URLSearchParams(location.search);
userInput.value = params.get("user") ?? String(1000 + Math.floor(Math.random() * 9000));
roomInput.value = params.get("room") ?? "sample";
draw();
show(view);
