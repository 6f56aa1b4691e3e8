/**
 * The panel's form for one's own name and colour. Saving goes to the server;
 * what everyone sees then comes back as presence, so the form shows only what
 * it sent and any refusal.
 */
import * as React from 'react';
import { useEffect, useState } from 'react';

import { userColor } from './colors';
import { ProfileApi } from './profile';

export function ProfileForm(props: {
  api: ProfileApi;
  userId: string;
  onDone: () => void;
}): React.ReactElement {
  const { api, userId, onDone } = props;
  const [name, setName] = useState('');
  const [color, setColor] = useState('');
  const [ownColor, setOwnColor] = useState(false);
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(true);
  // Until the profile is in, nothing to edit: typing would be overwritten by it.
  const [loaded, setLoaded] = useState(false);

  useEffect(() => {
    let live = true;
    api
      .get()
      .then(profile => {
        if (live) {
          setName(profile.chosen.name ?? profile.name);
          setOwnColor(profile.chosen.color !== null);
          setColor(profile.color ?? userColor(userId));
          setLoaded(true);
        }
      })
      .catch(reason => live && setError(`Could not load: ${reason.message ?? reason}`))
      .finally(() => live && setBusy(false));
    return () => {
      live = false;
    };
  }, [api, userId]);

  const save = (event: React.FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError('');
    // An empty name goes back to the one from the login.
    api
      .put({ name: name.trim() ? name : null, color: ownColor ? color : null })
      .then(onDone)
      .catch(reason => setError(reason.message ?? String(reason)))
      .finally(() => setBusy(false));
  };

  return (
    <form
      className="nyo-profile-form"
      onSubmit={save}
      aria-label="Your name and colour"
    >
      <label>
        Name
        <input
          className="nyo-profile-name"
          type="text"
          value={name}
          placeholder="The name from your login"
          disabled={!loaded}
          onChange={event => setName(event.target.value)}
        />
      </label>
      <label>
        <input
          className="nyo-profile-own-color"
          type="checkbox"
          checked={ownColor}
          disabled={!loaded}
          onChange={event => setOwnColor(event.target.checked)}
        />
        Own colour
        <input
          className="nyo-profile-color"
          type="color"
          value={color || userColor(userId)}
          disabled={!loaded || !ownColor}
          onChange={event => setColor(event.target.value)}
        />
      </label>
      <div className="nyo-profile-buttons">
        <button
          className="jp-mod-styled jp-mod-accept"
          type="submit"
          disabled={busy || !loaded}
        >
          Save
        </button>
        <button className="jp-mod-styled" type="button" onClick={onDone}>
          Cancel
        </button>
      </div>
      <div className="nyo-profile-error" role="alert">
        {error}
      </div>
    </form>
  );
}
