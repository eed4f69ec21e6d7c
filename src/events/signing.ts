/**
 * Webhook request signing (HMAC-SHA256, Stripe-style header).
 *
 * Every webhook request carries
 *
 *     x-gatekeeper-signature: t=<unix time in ms>,v1=<hex HMAC-SHA256>
 *
 * To verify a request:
 *
 *  1. Take the raw request body bytes exactly as received (before any JSON
 *     parsing; re-serialising changes the bytes and breaks the signature).
 *  2. Read `t` and `v1` from the x-gatekeeper-signature header (split on ",",
 *     then each part on the first "="). There may be more than one `v1`
 *     while a secret is being rotated; accept if any one matches.
 *  3. Compute HMAC-SHA256 keyed with the webhook's secret over the bytes of
 *     `t + "." + body`, and hex-encode it.
 *  4. Compare it with `v1` in constant time.
 *  5. Reject if |now − t| is more than 5 minutes, so a captured request
 *     cannot be replayed later.
 *
 * The timestamp is taken at each attempt, so a retried delivery has a fresh
 * `t` (and signature) but the same body and the same x-gatekeeper-delivery id;
 * receivers deduplicate on that id.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'x-gatekeeper-signature';
/** The event type, e.g. JOB_HELD. */
export const EVENT_HEADER = 'x-gatekeeper-event';
/** Stable per event and webhook across retries: the receiver's idempotency key. */
export const DELIVERY_HEADER = 'x-gatekeeper-delivery';

const DEFAULT_TOLERANCE_MS = 5 * 60_000;

function sign(secret: string, body: string, timestampMs: number): string {
  return createHmac('sha256', secret).update(`${timestampMs}.${body}`).digest('hex');
}

/** The x-gatekeeper-signature value for `body` sent at `timestampMs`. */
export function signatureHeader(secret: string, body: string, timestampMs: number): string {
  return `t=${timestampMs},v1=${sign(secret, body, timestampMs)}`;
}

/** True if `header` signs `body` with `secret` and is no older (or newer) than `toleranceMs`. */
export function verifySignature(
  secret: string,
  header: string,
  body: string,
  nowMs: number,
  toleranceMs = DEFAULT_TOLERANCE_MS,
): boolean {
  let t: number | undefined;
  const candidates: string[] = [];
  for (const part of header.split(',')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    const key = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim();
    if (key === 't' && /^\d+$/.test(value)) t = Number(value);
    else if (key === 'v1') candidates.push(value);
  }
  if (t === undefined || !Number.isSafeInteger(t) || Math.abs(nowMs - t) > toleranceMs) return false;
  const expected = Buffer.from(sign(secret, body, t), 'utf8');
  // timingSafeEqual throws on unequal lengths; a wrong length is simply no match
  // (and leaks nothing: the expected length is public).
  return candidates.some((c) => {
    const given = Buffer.from(c, 'utf8');
    return given.length === expected.length && timingSafeEqual(given, expected);
  });
}
