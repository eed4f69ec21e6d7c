/**
 * The replies of release, settle, cancel and scope (see each script's header
 * and src/redis/wire.ts), as outcomes. reserve's is in reserve-wire.ts. A
 * reply code no script answers throws: it is a bug, never a decision.
 */
import { replyOf } from '../redis/wire.ts';
import { csv, parseCharge, parsePrice, parseShortfalls } from './reserve-wire.ts';
import type { LimitUnit } from './pricing.ts';
import type { ReleaseOutcome, ScopeState, SettleOutcome, UnpricedWhy } from './types.ts';

export function decodeRelease(r: (number | string)[]): ReleaseOutcome {
  switch (replyOf('release', r[0])) {
    case 'admitted': return { kind: 'admitted', amountGpuMs: Number(r[1]), scopes: csv(r[2]), price: parsePrice(String(r[3])), charges: parseCharge(r[4])!, exempt: r[5] === 1 };
    case 'heldBehind': return { kind: 'held', shortfalls: parseShortfalls(r, 4, Number(r[3])), ahead: Number(r[1]), line: String(r[2]) };
    case 'notHeld': return { kind: 'not-held', state: String(r[1]) };
    case 'rejected': return { kind: 'rejected', gpuType: String(r[1]), why: unpricedWhy(r[2]) };
    case 'held': {
      // It now waits in the lines of what it misses.
      const shortfalls = parseShortfalls(r, 2, Number(r[1]));
      return { kind: 'held', shortfalls, ahead: 0, lines: shortfalls.map((s) => s.scope) };
    }
  }
}

function unpricedWhy(v: number | string | undefined): UnpricedWhy {
  if (v === 'not-allowed' || v === 'unknown' || v === 'too-costly') return v;
  throw new Error(`release: a rejection for its GPU type says why as ${JSON.stringify(v)}`);
}

export function decodeSettle(jobId: string, scopes: string[], r: (number | string)[]): SettleOutcome {
  switch (replyOf('settle', r[0])) {
    case 'settled': return { kind: 'settled', reservedGpuMs: Number(r[1]), actualGpuMs: Number(r[2]), capped: String(r[3] ?? '') };
    case 'already': return { kind: 'already', reservedGpuMs: Number(r[1]), actualGpuMs: Number(r[2]) };
    case 'noReservation': return { kind: 'no-reservation' };
    case 'wrongScopes': throw new Error(`settle(${jobId}): scopes ${scopes.join(',')} are not the reservation's (${String(r[1])})`);
  }
}

export function decodeCancel(r: (number | string)[]): { kind: 'cancelled' } | { kind: 'not-held'; state: string } {
  return replyOf('cancel', r[0]) === 'cancelled' ? { kind: 'cancelled' } : { kind: 'not-held', state: String(r[1]) };
}

const UNIT_OF: Record<string, LimitUnit | 'gpus'> = { h: 'gpuHours', u: 'units', d: 'usd', g: 'gpus' };

/** scope.lua's reply for `bases`: numbers as strings, '' for none. */
export function decodeScopes(bases: string[], out: string[][]): ScopeState[] {
  return out.map(([id, limit, ceiling, used, reserved, carry, adjust, exemptUsed, exemptReserved, unit, ...all], i) => ({
    base: bases[i]!,
    id: id!,
    unit: UNIT_OF[unit ?? 'h'] ?? 'gpuHours',
    counted: {
      gpuHours: { used: Number(all[0] ?? 0), reserved: Number(all[1] ?? 0) },
      units: { used: Number(all[2] ?? 0), reserved: Number(all[3] ?? 0) },
      usd: { used: Number(all[4] ?? 0), reserved: Number(all[5] ?? 0) },
    },
    limitGpuMs: limit === '' ? null : Number(limit),
    ceilingGpuMs: ceiling === '' ? null : Number(ceiling),
    usedGpuMs: Number(used),
    reservedGpuMs: Number(reserved),
    carryGpuMs: Number(carry),
    adjustGpuMs: Number(adjust),
    exemptUsedGpuMs: Number(exemptUsed),
    exemptReservedGpuMs: Number(exemptReserved),
  }));
}
