/**
 * What every command group gets from the program: an API client built from
 * the global options (--url, --token, --actor) and a printer for --json or
 * a table. Each file in commands/ adds one group of commands with it.
 */
import type { ApiClient } from './client.ts';

export interface CliContext {
  /** The API client and --json, read when a command runs (after options are parsed). */
  client(): { api: ApiClient; json: boolean };
  /** Print the server's answer as JSON, or `human()` for people; either way inert. */
  print(json: boolean, value: unknown, human: () => string): void;
}
