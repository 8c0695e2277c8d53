/**
 * A transport carries whole bodies (encoded packets) both ways; the client
 * never sees framing. TCP adds a length prefix (./tcp.ts); WebSocket needs
 * none, one binary message being one body (./websocket.ts). Anything else
 * (a test's fault injector, a proxy) plugs in the same way.
 */
export interface TransportHandlers {
  /** One body from the server (an encoded ServerPacket). */
  message(body: Uint8Array): void;
  /** The connection is gone (called once; `error` when it failed). */
  closed(error?: Error): void;
}

export interface Transport {
  /** Queues one body (an encoded ClientPacket) for sending. */
  send(body: Uint8Array): void;
  /** Closes the connection; `closed` follows. */
  close(): void;
}

/** Opens a new connection; resolves once it is usable. Called again for every reconnect. */
export type Connect = (handlers: TransportHandlers) => Promise<Transport>;
