#!/usr/bin/env node
/**
 * `node dist/cli.js --addr HOST:PORT --token TOKEN publish MESSAGE` prints `{"id": "<hex>"}`;
 * `… subscribe --count N --timeout S` prints one JSON line per message and exits 0 after N
 * messages, 1 on timeout. Errors print `{"error", "code"}` on stderr and exit 1 (2: usage).
 */

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Client } from "./client.js";
import { StatusError } from "./errors.js";
import { messageJson } from "./protocol.js";

const USAGE = `usage: cli.js --addr HOST:PORT (--token TOKEN | --token-file FILE) [--server-id PEERID] [--ca FILE]
              [--connect-timeout S] (publish MESSAGE | subscribe [--count N] [--timeout S])`;

function fail(err: unknown): number {
  const body =
    err instanceof StatusError
      ? { error: err.label || err.name, code: err.code }
      : { error: err instanceof Error ? err.message : String(err) };
  process.stderr.write(JSON.stringify(body) + "\n");
  return 1;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        addr: { type: "string" },
        token: { type: "string" },
        "token-file": { type: "string" },
        "server-id": { type: "string" },
        ca: { type: "string" },
        "connect-timeout": { type: "string", default: "10" },
        count: { type: "string", default: "1" },
        timeout: { type: "string", default: "30" },
      },
    });
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values: o, positionals } = parsed;
  const [command, ...rest] = positionals;
  const token = o.token ?? (o["token-file"] ? readFileSync(o["token-file"], "ascii").trim() : undefined);
  const badCommand = command !== "publish" && command !== "subscribe";
  if (!o.addr || !token || badCommand || (command === "publish" && rest.length !== 1)) {
    process.stderr.write(USAGE + "\n");
    return 2;
  }
  const insecure = !o["server-id"] && !o.ca;
  if (insecure) process.stderr.write("note: the node's identity is not verified (use --server-id or --ca)\n");
  let client: Client;
  try {
    client = await Client.connect(o.addr, token, {
      serverId: o["server-id"],
      ca: o.ca ? readFileSync(o.ca) : undefined,
      insecure,
      timeoutMs: Number(o["connect-timeout"]) * 1000,
    });
  } catch (err) {
    return fail(err);
  }
  try {
    if (command === "publish") {
      process.stdout.write(JSON.stringify({ id: await client.publish(rest[0] as string) }) + "\n");
      return 0;
    }
    await client.subscribe();
    const want = Number(o.count);
    const deadline = Date.now() + Number(o.timeout) * 1000;
    let got = 0;
    while (got < want) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`timed out after ${got} of ${want} messages`);
      const item = await client.recv(remaining);
      if (item.type === "lagged") {
        process.stderr.write(`note: ${item.dropped} deliveries dropped (too slow)\n`);
        continue;
      }
      if (item.type === "direct") {
        process.stderr.write(`note: a DIRECT message of ${item.data.length} bytes (not printed)\n`);
        continue;
      }
      process.stdout.write(JSON.stringify(messageJson(item)) + "\n");
      got += 1;
    }
    return 0;
  } catch (err) {
    return fail(err);
  } finally {
    client.close();
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
