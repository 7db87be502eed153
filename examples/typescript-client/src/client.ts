// A typed client of the Pawtropolis API: openapi-fetch over the types that openapi-typescript
// generates from openapi.yaml (`npm run generate` writes schema.d.ts).
import createClient from "openapi-fetch";
import { EventSource } from "eventsource";
import type { components, paths } from "./schema.js";

export type { components, paths } from "./schema.js";
/** One row of the action log, as `/api/logs` and the live stream send it. */
export type LogItem = components["schemas"]["LogItem"];
/** A live stream event: a log item plus its time in RFC 3339. */
export type StreamedAction = LogItem & { timestamp: string };

/** A client for `baseUrl` (e.g. `http://127.0.0.1:3000`) that sends `token` on every call. */
export function createPawtropolisClient(baseUrl: string, token: string) {
  return createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${token}` },
  });
}

/** What a live stream subscriber is told. */
export interface StreamHandlers {
  /** Every `event: action`, in id order. */
  onAction(action: StreamedAction, id: string): void;
  /** `event: resync`: more was missed than the server replays, or the resumed id is not in the
   * log (a restored database); reload the log. The stream goes on live after it. */
  onResync?(): void;
  /** The connection failed (EventSource reconnects by itself unless closed). */
  onError?(error: unknown): void;
}

/**
 * Follows `GET /api/logs/stream` for `guildId`. With `lastEventId` (an id a stream sent, not
 * the newest row of a `/api/logs` page: on PostgreSQL a row below that may still be committing),
 * the stream first replays every action after it. Browsers cannot set headers on an EventSource, so they pass
 * `last_event_id` in the URL and sign in by cookie; here the token goes in a header.
 */
export function followActions(
  baseUrl: string,
  token: string,
  guildId: string,
  handlers: StreamHandlers,
  lastEventId?: string,
): EventSource {
  const url = new URL("/api/logs/stream", baseUrl);
  url.searchParams.set("guild_id", guildId);
  if (lastEventId !== undefined) url.searchParams.set("last_event_id", lastEventId);
  const source = new EventSource(url, {
    fetch: (input, init) =>
      fetch(input, {
        ...init,
        headers: { ...init.headers, Authorization: `Bearer ${token}` },
      }),
  });
  source.addEventListener("action", (event) => {
    handlers.onAction(JSON.parse(event.data) as StreamedAction, event.lastEventId);
  });
  source.addEventListener("resync", () => handlers.onResync?.());
  source.addEventListener("error", (event) => handlers.onError?.(event));
  return source;
}
