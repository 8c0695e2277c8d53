/**
 * The client: one session over a connection it keeps alive. It matches
 * replies to promises by sequence id, hands pushes to listeners, heartbeats
 * when idle and, after a dropped connection, reconnects, resumes and re-sends
 * every unanswered request with its original id (PROTOCOL.md section 5).
 */
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  ClientPacketSchema,
  ErrorCode,
  KickReason,
  ServerPacketSchema,
  type ClientPacket,
  type ServerPacket,
  type SessionSnapshot,
} from "./gen/client_pb.js";
import { ClientClosed, GameMeshError, KickedError, RequestTimeout, ServerError, SessionLost, UnexpectedReply } from "./errors.js";
import type { Connect, Transport } from "./transport.js";

/** Kicks after which resuming would fight another device or a dead session. */
const FINAL_KICKS = new Set([KickReason.DUPLICATE_LOGIN, KickReason.SESSION_EXPIRED]);
/** Resume answers meaning "this session is gone". */
const SESSION_GONE = new Set([ErrorCode.SESSION_NOT_FOUND, ErrorCode.INVALID_TOKEN]);

export interface ClientOptions {
  requestTimeoutMs?: number; // default 5000
  heartbeatIntervalMs?: number; // a heartbeat after this long without sending (default 10000)
  reconnectForMs?: number; // keep trying to resume this long (default 55000; sessions live 60 s)
  unavailableRetryMs?: number; // UNAVAILABLE is retried with the same id after this (default 200)
}

export interface LoginOptions extends ClientOptions {
  userId: bigint;
  token: string;
}

export interface RequestOptions {
  timeoutMs?: number;
  /** An explicit id instead of the next one (re-using an id is how duplicates are tested). */
  sequenceId?: bigint;
  retryUnavailable?: boolean; // default true
}

export interface Session {
  sessionId: bigint;
  resumeToken: string;
  userId: bigint;
}

type Body = MessageInitShape<typeof ClientPacketSchema>["body"];
type Listener<T> = (value: T) => void;

interface Pending {
  bytes: Uint8Array;
  resolve: (p: ServerPacket) => void;
  reject: (e: Error) => void;
  retryUnavailable: boolean;
  deadline: number;
}

interface Events {
  push: ServerPacket;
  kicked: KickedError;
  resumed: SessionSnapshot;
  closed: GameMeshError;
}

export class Client {
  session?: Session;
  /** Requests re-sent after resumes, and resumes done (observability; the tests check them). */
  resentRequests = 0;
  resumes = 0;
  lastRttMs?: number;

  private nextSeq = 1n;
  private readonly pending = new Map<bigint, Pending>();
  private transport?: Transport;
  private closedReason?: GameMeshError;
  private lastSent = Date.now();
  private heartbeatTimer?: ReturnType<typeof setInterval>;
  private readonly listeners: { [K in keyof Events]: Set<Listener<Events[K]>> } = {
    push: new Set(),
    kicked: new Set(),
    resumed: new Set(),
    closed: new Set(),
  };
  private readonly routes = new Map<string, Set<Listener<Uint8Array>>>();
  private handshake?: { isReply: (p: ServerPacket) => boolean; done: (p: ServerPacket | Error) => void };
  private readonly opts: Required<ClientOptions>;

  private constructor(private readonly connectTransport: Connect, options: ClientOptions) {
    this.opts = {
      requestTimeoutMs: options.requestTimeoutMs ?? 5000,
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 10_000,
      reconnectForMs: options.reconnectForMs ?? 55_000,
      unavailableRetryMs: options.unavailableRetryMs ?? 200,
    };
  }

  /** Connects and logs in; rejects with ServerError (e.g. INVALID_TOKEN) or KickedError. */
  static async connect(transport: Connect, options: LoginOptions): Promise<Client> {
    const client = new Client(transport, options);
    const conn = await client.open();
    try {
      const seq = client.nextSeq++;
      const login = body(
        await client.handshakeOn(conn, { sequenceId: seq, body: { case: "login", value: { userId: options.userId, token: options.token } } }, (p) => p.sequenceId === seq),
        "login",
      );
      client.session = { sessionId: login.sessionId, resumeToken: login.resumeToken, userId: options.userId };
    } catch (err) {
      conn.close();
      throw err;
    }
    client.transport = conn;
    client.heartbeatTimer = setInterval(() => client.heartbeatIfIdle(), Math.max(10, client.opts.heartbeatIntervalMs / 4));
    return client;
  }

  // ---------------------------------------------------------------- requests

  /** Sends a body and resolves with the reply packet; ErrorResponse rejects with ServerError. */
  request(packetBody: Body, options: RequestOptions = {}): Promise<ServerPacket> {
    if (this.closedReason) return Promise.reject(this.closedReason);
    const seq = options.sequenceId ?? this.nextSeq++;
    const timeoutMs = options.timeoutMs ?? this.opts.requestTimeoutMs;
    const bytes = toBinary(ClientPacketSchema, create(ClientPacketSchema, { sequenceId: seq, body: packetBody }));
    return new Promise<ServerPacket>((resolve, reject) => {
      const timer = setTimeout(() => {
        if (this.pending.get(seq) === entry) this.pending.delete(seq);
        reject(new RequestTimeout(`no reply to sequence id ${seq} within ${timeoutMs} ms`));
      }, timeoutMs);
      const entry: Pending = {
        bytes,
        resolve: (p) => (clearTimeout(timer), resolve(p)),
        reject: (e) => (clearTimeout(timer), reject(e)),
        retryUnavailable: options.retryUnavailable ?? true,
        deadline: Date.now() + timeoutMs,
      };
      this.pending.set(seq, entry);
      this.write(bytes); // or, while reconnecting, the resume re-sends it
    });
  }

  async echo(data: Uint8Array, options?: RequestOptions): Promise<Uint8Array> {
    return body(await this.request({ case: "echo", value: { data } }, options), "echo").data;
  }

  async increment(options?: RequestOptions): Promise<bigint> {
    return body(await this.request({ case: "increment", value: {} }, options), "increment").value;
  }

  /** A game route (PROTOCOL.md section 10); resolves with the GameResponse payload. */
  async call(route: string, payload: Uint8Array = new Uint8Array(), options?: RequestOptions): Promise<Uint8Array> {
    return body(await this.request({ case: "game", value: { route, payload } }, options), "game").payload;
  }

  /** The id the next request will use. */
  nextSequenceId(): bigint {
    return this.nextSeq;
  }

  // ---------------------------------------------------------------- events

  /** Listens to the GamePush payloads of one route; returns the unsubscribe function. */
  onPush(route: string, listener: Listener<Uint8Array>): () => void {
    const set = this.routes.get(route) ?? new Set();
    this.routes.set(route, set);
    set.add(listener);
    return () => set.delete(listener);
  }

  /** push: every push packet; kicked: every kick; resumed: after each resume; closed: the client stopped. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    this.listeners[event].add(listener);
    return () => this.listeners[event].delete(listener);
  }

  /** Why the client stopped, or undefined while it runs. */
  get closed(): GameMeshError | undefined {
    return this.closedReason;
  }

  get connected(): boolean {
    return this.transport !== undefined;
  }

  /** Closes; with `logout` the session ends on the server first. */
  async close(options: { logout?: boolean } = {}): Promise<void> {
    if (options.logout && !this.closedReason) {
      await this.request({ case: "logout", value: {} }, { timeoutMs: 2000 }).catch(() => undefined);
    }
    this.finish(new ClientClosed("client closed"));
  }

  /** Drops the connection as a network fault would (tests, drills); the client resumes by itself. */
  dropConnection(): void {
    this.transport?.close();
  }

  // ---------------------------------------------------------------- internals

  private open(): Promise<Transport> {
    // The handlers outlive handshakes: they route by the current state.
    let self: Transport | undefined;
    return this.connectTransport({
      message: (bytes) => this.received(bytes),
      closed: () => this.lost(self),
    }).then((t) => (self = t));
  }

  private handshakeOn(conn: Transport, packet: MessageInitShape<typeof ClientPacketSchema>, isReply: (p: ServerPacket) => boolean): Promise<ServerPacket> {
    return new Promise((resolve, reject) => {
      this.handshake = {
        isReply,
        done: (result) => {
          this.handshake = undefined;
          result instanceof Error ? reject(result) : resolve(result);
        },
      };
      conn.send(toBinary(ClientPacketSchema, create(ClientPacketSchema, packet)));
    });
  }

  private received(bytes: Uint8Array): void {
    let packet: ServerPacket;
    try {
      packet = fromBinary(ServerPacketSchema, bytes);
    } catch {
      return; // not a ServerPacket: ignored
    }
    const hs = this.handshake;
    if (hs && hs.isReply(packet)) return hs.done(packet);
    if (packet.sequenceId !== 0n) return this.answer(packet);
    switch (packet.body.case) {
      case "kicked":
        return this.kicked(new KickedError(packet.body.value.reason, packet.body.value.detail));
      case "heartbeat":
        this.lastRttMs = Math.max(0, Date.now() - Number(packet.body.value.clientTimeMs));
        return;
      default:
        return this.deliverPush(packet);
    }
  }

  private answer(packet: ServerPacket): void {
    const entry = this.pending.get(packet.sequenceId);
    if (!entry) return; // late reply to a request that timed out
    if (packet.body.case === "error") {
      const { code, detail, outcomeUnknown } = packet.body.value;
      // outcomeUnknown: the server kept this answer for the id, so a
      // re-send only gets it again; the caller decides what to do.
      const retry = entry.retryUnavailable && code === ErrorCode.UNAVAILABLE && !outcomeUnknown;
      if (retry && Date.now() + this.opts.unavailableRetryMs < entry.deadline) {
        setTimeout(() => this.pending.get(packet.sequenceId) === entry && this.write(entry.bytes), this.opts.unavailableRetryMs);
        return;
      }
      this.pending.delete(packet.sequenceId);
      return entry.reject(new ServerError(code, detail, packet.sequenceId, outcomeUnknown));
    }
    this.pending.delete(packet.sequenceId);
    entry.resolve(packet);
  }

  private kicked(error: KickedError): void {
    this.emit("kicked", error);
    this.handshake?.done(error);
    if (FINAL_KICKS.has(error.reason)) this.finish(error);
    // Any other kick: the server closes the connection and we resume.
  }

  private deliverPush(packet: ServerPacket): void {
    if (packet.body.case === "gamePush") {
      for (const listener of this.routes.get(packet.body.value.route) ?? []) safely(listener, packet.body.value.payload);
    }
    this.emit("push", packet);
  }

  /** A connection closed: resume on a new one unless the client is done. */
  private lost(which: Transport | undefined): void {
    this.handshake?.done(new GameMeshError("connection closed during the handshake"));
    if (which !== undefined && this.transport !== which) return; // an attempt's connection
    this.transport = undefined;
    if (!this.closedReason) void this.reconnect();
  }

  private async reconnect(): Promise<void> {
    const giveUp = Date.now() + this.opts.reconnectForMs;
    let pauseMs = 50;
    while (!this.closedReason) {
      try {
        const conn = await this.open();
        const { sessionId, resumeToken } = this.session!;
        // Sequence id 0: the resume must not take an id of the session's
        // sequence, or unanswered requests below it could never run.
        const reply = await this.handshakeOn(
          conn,
          { sequenceId: 0n, body: { case: "resume", value: { sessionId, resumeToken } } },
          (p) => p.sequenceId === 0n && (p.body.case === "resume" || p.body.case === "error"),
        ).catch((err) => {
          conn.close();
          throw err;
        });
        const snapshot = body(reply, "resume").snapshot!;
        if (this.closedReason) return conn.close();
        this.resumed(conn, snapshot);
        return;
      } catch (err) {
        if (err instanceof ServerError && SESSION_GONE.has(err.code)) return this.finish(new SessionLost(`resume refused: ${err.message}`));
        if (err instanceof KickedError && FINAL_KICKS.has(err.reason)) return this.finish(err);
      }
      if (Date.now() + pauseMs > giveUp) return this.finish(new SessionLost("no gateway took the resume in time"));
      await new Promise((r) => setTimeout(r, pauseMs));
      pauseMs = Math.min(pauseMs * 2, 2000);
    }
  }

  /** Re-sends what was not answered, in id order, before anything new can go out. */
  private resumed(conn: Transport, snapshot: SessionSnapshot): void {
    if (this.nextSeq <= snapshot.lastSequenceId) this.nextSeq = snapshot.lastSequenceId + 1n;
    for (const seq of [...this.pending.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) {
      this.resentRequests++;
      conn.send(this.pending.get(seq)!.bytes);
    }
    this.transport = conn;
    this.lastSent = Date.now();
    this.resumes++;
    this.emit("resumed", snapshot);
  }

  private heartbeatIfIdle(): void {
    if (!this.transport || Date.now() - this.lastSent < this.opts.heartbeatIntervalMs) return;
    const packet = create(ClientPacketSchema, { body: { case: "heartbeat", value: { clientTimeMs: BigInt(Date.now()) } } });
    this.write(toBinary(ClientPacketSchema, packet));
  }

  private write(bytes: Uint8Array): void {
    if (!this.transport) return;
    this.transport.send(bytes);
    this.lastSent = Date.now();
  }

  private finish(reason: GameMeshError): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    clearInterval(this.heartbeatTimer);
    for (const entry of this.pending.values()) entry.reject(reason);
    this.pending.clear();
    const conn = this.transport;
    this.transport = undefined;
    conn?.close();
    this.emit("closed", reason);
  }

  private emit<K extends keyof Events>(event: K, value: Events[K]): void {
    for (const listener of this.listeners[event]) safely(listener, value);
  }
}

function safely<T>(listener: Listener<T>, value: T): void {
  try {
    listener(value);
  } catch (err) {
    console.error("gamemesh listener failed", err);
  }
}

/** The reply's body of the expected kind; an ErrorResponse becomes ServerError. */
type ReplyBody<K> = Extract<ServerPacket["body"], { case: K }> extends { value: infer V } ? V : never;

function body<K extends NonNullable<ServerPacket["body"]["case"]>>(reply: ServerPacket, kind: K): ReplyBody<K> {
  const got = reply.body as { case: string | undefined; value?: unknown };
  if (got.case === kind) return got.value as ReplyBody<K>;
  if (reply.body.case === "error") throw new ServerError(reply.body.value.code, reply.body.value.detail, reply.sequenceId);
  throw new UnexpectedReply(`expected ${kind}, got ${reply.body.case} (sequence id ${reply.sequenceId})`);
}
