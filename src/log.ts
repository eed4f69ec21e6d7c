import { pino, type Logger } from 'pino';

/**
 * One pino root per process. Tokens, passwords and connection strings are
 * redacted wherever they appear in a logged object.
 */
export function createLogger(level: string, name = 'gpu-gatekeeper'): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: [
        'token',
        '*.token',
        'adminToken',
        '*.adminToken',
        'authorization',
        '*.authorization',
        'req.headers.authorization',
        'password',
        '*.password',
        'databaseUrl',
        '*.databaseUrl',
        'redisUrl',
        '*.redisUrl',
      ],
      censor: '[redacted]',
    },
  });
}

/** Strip credentials from a URL before it is shown anywhere. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '[unparseable url]';
  }
}

export type { Logger };
