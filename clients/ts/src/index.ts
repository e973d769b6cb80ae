/**
 * svc-overlay client: publish to and subscribe on an svc-overlay node from Node.js. A client
 * session is TLS 1.3 without a client certificate, authenticated by a capability token alone.
 */

export { Client, INBOX_LIMIT, type ConnectOptions, type Delivery } from "./client.js";
export * from "./errors.js";
export * as frame from "./frame.js";
export {
  ClientSession,
  helloRequestBytes,
  messageJson,
  parseDeliver,
  parseHelloReply,
  type Direct,
  type Event,
  type HelloReply,
  type Lagged,
  type Message,
} from "./protocol.js";
export { blake3Small, peerIdOf, spkiDer } from "./peerid.js";
