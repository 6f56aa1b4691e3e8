/**
 * One's own display name and colour, through the server's profile API
 * (`{base_url}nyo-realtime/api/profile`). The server applies a change to every
 * presence channel one is in (`presence:updated`), so every view shows it
 * without anything here telling them.
 */
import { ServerConnection } from '@jupyterlab/services';

export interface Profile {
  userId: string;
  /** The name shown: the chosen one, else the identity's. */
  name: string;
  /** The colour shown, if any: the chosen one, else the identity's. */
  color: string | null;
  /** What one chose; null where the identity's value applies. */
  chosen: { name: string | null; color: string | null };
}

/** `null` clears a choice; a key left out stays as it is. */
export interface ProfileUpdate {
  name?: string | null;
  color?: string | null;
}

export interface ProfileApi {
  get(): Promise<Profile>;
  put(update: ProfileUpdate): Promise<Profile>;
}

/** A refusal, with the server's message for the person who typed it. */
export class ProfileError extends Error {
  constructor(
    readonly code: string,
    message: string
  ) {
    super(message);
  }
}

export function profileApi(settings: ServerConnection.ISettings): ProfileApi {
  const url = new URL('nyo-realtime/api/profile', settings.baseUrl).toString();
  const call = async (init: RequestInit): Promise<Profile> => {
    // 'no-cache', not the default 'no-store', which adds a query the API refuses.
    const response = await ServerConnection.makeRequest(
      url,
      { cache: 'no-cache', ...init },
      settings
    );
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = body?.error ?? {};
      throw new ProfileError(
        String(error.code ?? response.status),
        String(error.message ?? response.statusText)
      );
    }
    return body.profile as Profile;
  };
  return {
    get: () => call({ method: 'GET' }),
    put: update =>
      call({
        method: 'PUT',
        body: JSON.stringify(update),
        headers: { 'Content-Type': 'application/json' }
      })
  };
}
