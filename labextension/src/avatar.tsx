/** The React twin of `renderAvatar` (avatars.ts), for the panel and the chat. */
import * as React from 'react';

import { avatarTitle, colorOf, initialsOf, Person } from './avatars';

/** The same avatar as `renderAvatar`'s, as a React element. */
export function Avatar(props: {
  person: Person;
  size?: 'small' | 'large';
  showStatus?: boolean;
}): React.ReactElement {
  const { person, size = 'small' } = props;
  const status = props.showStatus ? person.status : undefined;
  return (
    <span
      className={`nyo-avatar nyo-avatar-${size}`}
      data-user-id={person.userId}
      data-status={status}
      title={avatarTitle(person)}
      style={person.avatar_url ? undefined : { backgroundColor: colorOf(person) }}
    >
      {person.avatar_url ? (
        <img src={person.avatar_url} alt={person.name} />
      ) : (
        initialsOf(person.name)
      )}
      {status && <span className={`nyo-status-dot nyo-status-${status}`} />}
    </span>
  );
}
