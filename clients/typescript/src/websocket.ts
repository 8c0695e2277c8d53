/**
 * The WebSocket transport, written against the standard WebSocket API: the
 * browser's, Node 22's global one, or the `ws` package's on Node 20
 * (`webSocketTransport(url, { WebSocket: (await import("ws")).WebSocket })`).
 * One binary message carries exactly one body, with no length prefix.
 *
 * UNTESTED: the gateway has no WebSocket listener (`--ws-port`) yet. The
 * client logic above it is the one the TCP tests exercise.
 */
import type { Connect, Transport } from "./transport.js";

/** The part of the standard WebSocket constructor this transport uses. */
export type WebSocketConstructor = new (url: string) => WebSocket;

export interface WebSocketOptions {
  /** Defaults to the global WebSocket. */
  WebSocket?: WebSocketConstructor;
}

export function webSocketTransport(url: string, options: WebSocketOptions = {}): Connect {
  const Ctor = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (!Ctor) throw new Error("no WebSocket implementation: pass options.WebSocket (e.g. from the ws package)");
  return (handlers) =>
    new Promise<Transport>((resolve, reject) => {
      const ws = new Ctor(url);
      ws.binaryType = "arraybuffer";
      let open = false;
      ws.onopen = () => {
        open = true;
        resolve({ send: (body) => ws.send(body), close: () => ws.close() });
      };
      ws.onmessage = (event: MessageEvent) => {
        if (event.data instanceof ArrayBuffer) handlers.message(new Uint8Array(event.data));
        // A text message is not part of the contract: ignored.
      };
      ws.onerror = () => {
        if (!open) reject(new Error(`WebSocket ${url} failed to open`));
      };
      ws.onclose = (event: CloseEvent) => {
        if (open) handlers.closed(event.wasClean ? undefined : new Error(`WebSocket closed (${event.code})`));
      };
    });
}
