// The cockpit talks to citybrain through the same API as any other tool: bearer token,
// SQL over governed datasets (every query is an audited data call with a purpose).

const TOKEN_KEY = 'citybrain.token';

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
  ) {
    super(message);
  }
}

export function storedToken(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function storeToken(token: string | null): void {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** A token passed as `#token=...` (never sent to the server in a URL) is stored and removed. */
export function takeTokenFromFragment(): void {
  const match = location.hash.match(/^#token=([^&]+)/);
  if (match) {
    storeToken(decodeURIComponent(match[1]));
    history.replaceState(null, '', location.pathname + '#/overview');
  }
}

export interface Whoami {
  name: string;
  department: string;
  role: string;
}

export class Api {
  constructor(private token: string) {}

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  private async check(response: Response): Promise<Response> {
    if (response.ok) return response;
    let code = 'http_' + response.status;
    let message = response.statusText;
    try {
      const body = await response.json();
      code = body.error?.code ?? body.code ?? code;
      message = body.error?.message ?? body.message ?? message;
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, code, message);
  }

  async get<T>(path: string): Promise<T> {
    const response = await fetch(path, { headers: this.headers() });
    return (await this.check(response)).json() as Promise<T>;
  }

  async post<T>(path: string, body: unknown): Promise<T> {
    const response = await fetch(path, {
      method: 'POST',
      headers: this.headers({ 'Content-Type': 'application/json' }),
      body: JSON.stringify(body),
    });
    return (await this.check(response)).json() as Promise<T>;
  }

  async text(path: string): Promise<string> {
    const response = await fetch(path, { headers: this.headers() });
    return (await this.check(response)).text();
  }

  /**
   * Saves what `path` answers as a file named `filename` (an export: the browser cannot
   * send the token with a plain link, so the file is fetched and handed over as a blob).
   */
  async download(path: string, filename: string): Promise<void> {
    const response = await this.check(await fetch(path, { headers: this.headers() }));
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement('a');
    link.href = url;
    link.download = filename;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  /** Runs read-only SQL; rows come back as objects. */
  async sql<T = Record<string, unknown>>(sql: string, purpose: string): Promise<T[]> {
    const response = await fetch('/api/v1/sql', {
      method: 'POST',
      headers: this.headers({ 'Content-Type': 'application/json', Accept: 'application/json' }),
      body: JSON.stringify({ sql, purpose }),
    });
    return (await this.check(response)).json() as Promise<T[]>;
  }

  /**
   * Follows a Server-Sent-Events feed. EventSource cannot send an Authorization header, so
   * this reads the stream with fetch; it reconnects after a drop until `signal` aborts.
   */
  async follow(path: string, onEvent: (data: unknown) => void, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        const response = await this.check(
          await fetch(path, { headers: this.headers({ Accept: 'text/event-stream' }), signal }),
        );
        const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end: number;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            const data = block
              .split('\n')
              .filter((line) => line.startsWith('data:'))
              .map((line) => line.slice(5).replace(/^ /, ''))
              .join('\n');
            if (data) {
              try {
                onEvent(JSON.parse(data));
              } catch (e) {
                console.warn('unreadable event', e);
              }
            }
          }
        }
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && (e.status === 401 || e.status === 403 || e.status === 503)) {
          console.warn('stream unavailable', e.message);
          return;
        }
      }
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

/** Whether the hub has a dataset of this name (visible to the signed-in principal). */
export async function hasDataset(api: Api, name: string): Promise<boolean> {
  const { datasets } = await api.get<{ datasets: { name: string }[] }>('/api/v1/datasets');
  return datasets.some((d) => d.name === name);
}
