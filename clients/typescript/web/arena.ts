/**
 * The arena sample (PROTOCOL.md "The sample game: arena") over the
 * library's game routes: `call("arena.join" | "arena.move" |
 * "arena.leave")` and `onPush("arena.state")`. DOM-free, so the browser page
 * (./main.ts) draws what it holds and the Node tests drive the same code
 * over TCP.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { Client } from "../src/index.js";
import {
  JoinRequestSchema,
  JoinResponseSchema,
  LeaveRequestSchema,
  MoveRequestSchema,
  MoveResponseSchema,
  StateSchema,
  type JoinResponse,
  type State,
} from "./gen/arena_pb.js";

/** The board is BOARD x BOARD cells, x and y in 0..BOARD-1. */
export const BOARD = 100;

export const ROUTES = { join: "arena.join", move: "arena.move", leave: "arena.leave", state: "arena.state" } as const;

export type Direction = "up" | "down" | "left" | "right";

/** One step per direction; y grows downwards, as on the terminal client. */
export const STEPS: Readonly<Record<Direction, readonly [number, number]>> = {
  up: [0, -1],
  down: [0, 1],
  left: [-1, 0],
  right: [1, 0],
};

/** A player as the page shows it: the user id as a string, so it survives JSON. */
export interface PlayerView {
  userId: string;
  x: number;
  y: number;
}

/** What a page has drawn: the last state of its room (what the browser test reads). */
export interface BoardView {
  room: string;
  tick: number;
  players: PlayerView[];
}

export function boardView(state: State): BoardView {
  return {
    room: state.room,
    tick: Number(state.tick),
    players: state.players.map((p) => ({ userId: p.userId.toString(), x: p.x, y: p.y })),
  };
}

/**
 * One player's seat in the arena. It listens to `arena.state` from the
 * moment it is made, so the first state after the join is never missed;
 * states of another room (the player left and joined elsewhere) are
 * dropped.
 */
export class ArenaPlayer {
  /** The last state received for the current room. */
  latest?: State;
  room?: string;
  private readonly listeners = new Set<(state: State) => void>();
  private readonly unsubscribe: () => void;

  constructor(readonly client: Client) {
    this.unsubscribe = client.onPush(ROUTES.state, (payload) => this.received(fromBinary(StateSchema, payload)));
  }

  /** Joins (or creates) `room`; answers the tick rate and this player's position. */
  async join(room: string): Promise<JoinResponse> {
    const reply = await this.client.call(ROUTES.join, toBinary(JoinRequestSchema, create(JoinRequestSchema, { room })));
    const joined = fromBinary(JoinResponseSchema, reply);
    if (this.room !== joined.room) this.latest = undefined;
    this.room = joined.room;
    return joined;
  }

  /** One step; answers the position after it (clamped to the board). */
  async move(direction: Direction): Promise<{ x: number; y: number }> {
    const [dx, dy] = STEPS[direction];
    const reply = await this.client.call(ROUTES.move, toBinary(MoveRequestSchema, create(MoveRequestSchema, { dx, dy })));
    const { x, y } = fromBinary(MoveResponseSchema, reply);
    return { x, y };
  }

  async leave(): Promise<void> {
    await this.client.call(ROUTES.leave, toBinary(LeaveRequestSchema, create(LeaveRequestSchema)));
    this.room = undefined;
    this.latest = undefined;
  }

  /** Called with every state of the current room; returns the unsubscribe function. */
  onState(listener: (state: State) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Stops listening to the client's pushes (the client itself stays open). */
  dispose(): void {
    this.unsubscribe();
    this.listeners.clear();
  }

  private received(state: State): void {
    if (this.room !== undefined && state.room !== this.room) return;
    this.latest = state;
    for (const listener of this.listeners) listener(state);
  }
}
