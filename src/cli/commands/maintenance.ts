/** `gatekeeper audit` and `gatekeeper rebuild`: Redis counters against the Postgres ledger. */
import { CommanderError, type Command } from 'commander';
import { EXIT } from '../args.ts';
import { table } from '../table.ts';
import type { CliContext } from '../context.ts';

export function addMaintenanceCommands(program: Command, { client, print }: CliContext): void {
  program
    .command('audit')
    .description('compare the Redis counters with the Postgres ledger (exit 1 on drift)')
    .action(async () => {
      const { api, json } = client();
      const r = await api.call('GET', '/drift');
      const aside = (r.quarantined ?? []) as { id: number; counted: boolean }[];
      const note = aside.length
        ? `\n${aside.length} quarantined ledger entr${aside.length === 1 ? 'y' : 'ies'} (${aside.map((q) => q.id).join(', ')}) counted from ${aside.length === 1 ? 'its' : 'their'} raw fields; replay with: gatekeeper quarantine replay <id>`
        : '';
      print(json, r, () =>
        (r.drift.length === 0
          ? `no drift: ${r.counters} counters equal the ledger at stream entry ${r.streamId}`
          : table(
              ['COUNTER', 'FIELD', 'REDIS (GPU-ms)', 'LEDGER (GPU-ms)'],
              (r.drift as { counter: string; redis: Record<string, number>; ledger: Record<string, number> }[]).flatMap((d) =>
                Object.keys(d.redis).filter((f) => d.redis[f] !== d.ledger[f]).map((f) => [d.counter, f, d.redis[f], d.ledger[f]]),
              ),
            ) + `\n${r.drift.length} of ${r.counters} counters drift (stream entry ${r.streamId})`) + note,
      );
      if (r.drift.length > 0) throw new CommanderError(EXIT.failed, 'drift', 'drift found');
    });

  program
    .command('rebuild')
    .description('restore Redis counters, reservations and held lines from Postgres and gpu-held (stop the gatekeepers first)')
    .action(async () => {
      const { api, json } = client();
      const r = await api.call('POST', '/rebuild');
      print(json, r, () =>
        `rebuilt ${r.counters} counters, ${r.openReservations} open and ${r.settledReservations} settled reservations, ${r.heldJobs} held jobs, ${r.limits} limits; drift now: ${r.drift}`,
      );
    });
}
