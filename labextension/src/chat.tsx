/**
 * The lobby chat: messages as Markdown (through JupyterLab's renderer, which
 * sanitizes what it did not produce itself and highlights code blocks), and a
 * composer where Enter sends, Shift+Enter starts a new line, and `@` completes
 * the names of the people in the lobby.
 */
import * as React from 'react';
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'react';

import { Avatar } from './avatar';
import { chatMarkdown, chatTime, MAX_MARKDOWN_LENGTH } from './chatText';
import { Member } from './client';
import { useChannel } from './reactHooks';
import {
  completeMention,
  mentionCandidates,
  mentionQuery,
  Mentionable,
  mentions
} from './mentions';
import { labelled } from './names';
import {
  CHAT_EVENT,
  ChatEntry,
  chatEntryOf,
  MAX_CHAT_LENGTH,
  RealtimeModel
} from './model';
import { IRealtime } from './tokens';

/**
 * Draw `text` as Markdown into `host`, sanitized; returns what to dispose.
 * The page gives it from JupyterLab's rendermime; without, chat is plain text.
 */
export type MarkdownRenderer = (text: string, host: HTMLElement) => { dispose(): void };

/** Some people on the list at a time; typing narrows it. */
const MAX_CANDIDATES = 6;

function ChatText(props: {
  text: string;
  renderMarkdown?: MarkdownRenderer;
}): React.ReactElement {
  const { text, renderMarkdown } = props;
  const host = useRef<HTMLDivElement>(null);
  // Too long for a Markdown parser to be safe with (one hostile message could
  // freeze every reader's page): plain text, collapsed.
  const markdown = renderMarkdown && text.length <= MAX_MARKDOWN_LENGTH;
  const [expanded, setExpanded] = useState(false);
  useEffect(() => {
    if (!markdown || !renderMarkdown || !host.current) {
      return;
    }
    const rendered = renderMarkdown(chatMarkdown(text), host.current);
    return () => rendered.dispose();
  }, [text, markdown, renderMarkdown]);
  if (markdown) {
    return (
      <div className="nyo-chat-text">
        <div ref={host} />
      </div>
    );
  }
  // Text, never HTML, since chat is what other people typed.
  if (text.length <= MAX_MARKDOWN_LENGTH) {
    return <div className="nyo-chat-text nyo-chat-plain">{text}</div>;
  }
  return (
    <div
      className={`nyo-chat-text nyo-chat-plain nyo-chat-long${
        expanded ? '' : ' nyo-mod-collapsed'
      }`}
    >
      <div className="nyo-chat-long-text">{text}</div>
      <button
        type="button"
        className="nyo-chat-expand jp-mod-styled"
        onClick={() => setExpanded(!expanded)}
      >
        {expanded
          ? 'Show less'
          : `Show all (${Math.round(text.length / 1024)} KiB, as plain text)`}
      </button>
    </div>
  );
}

function ChatLine(props: {
  entry: ChatEntry;
  model: RealtimeModel;
  mentionsMe: boolean;
  renderMarkdown?: MarkdownRenderer;
}): React.ReactElement {
  const { entry, model, mentionsMe, renderMarkdown } = props;
  const when = new Date(entry.ts);
  return (
    <li
      className={`nyo-chat-entry${mentionsMe ? ' nyo-chat-mentions-me' : ''}`}
      data-message-id={entry.id}
      data-user-id={entry.userId ?? undefined}
    >
      {entry.userId && <Avatar person={model.personOf(entry.userId)} />}
      <div className="nyo-chat-body">
        <div className="nyo-chat-head">
          <span className="nyo-chat-author">{model.labelOf(entry.userId)}</span>
          <time className="nyo-chat-time" dateTime={when.toISOString()}>
            {chatTime(entry.ts)}
          </time>
        </div>
        <ChatText text={entry.text} renderMarkdown={renderMarkdown} />
      </div>
    </li>
  );
}

/** The message box, with `@` completion from `people`. */
function Composer(props: {
  people: readonly Mentionable[];
  me: string | undefined;
  onSend: (text: string) => Promise<unknown>;
}): React.ReactElement {
  const { people, me, onSend } = props;
  const [text, setText] = useState('');
  const [caret, setCaret] = useState(0);
  const [picked, setPicked] = useState(0);
  const [dismissed, setDismissed] = useState<number | undefined>();
  const [error, setError] = useState('');
  const box = useRef<HTMLTextAreaElement>(null);

  const query = mentionQuery(text, caret);
  // A few dozen names at most: filtered on every render, no memo needed.
  const candidates =
    query && query.start !== dismissed
      ? mentionCandidates(people, query.query, me).slice(0, MAX_CANDIDATES)
      : [];
  // The caret is put back after React has rendered the completed text.
  const nextCaret = useRef<number | undefined>();
  useLayoutEffect(() => {
    if (nextCaret.current !== undefined && box.current) {
      box.current.setSelectionRange(nextCaret.current, nextCaret.current);
      nextCaret.current = undefined;
    }
  });

  const complete = (person: Mentionable) => {
    if (!query) {
      return;
    }
    const done = completeMention(text, query.start, caret, person);
    setText(done.text);
    setCaret(done.caret);
    nextCaret.current = done.caret;
    setPicked(0);
    box.current?.focus();
  };

  const send = () => {
    const trimmed = text.trim().slice(0, MAX_CHAT_LENGTH);
    if (!trimmed) {
      return;
    }
    setText('');
    setCaret(0);
    setError('');
    // While reconnecting the client holds the message and sends it, once,
    // when the lobby is subscribed again.
    onSend(trimmed).catch(reason => {
      setText(current => current || text);
      setError(`Not sent: ${reason?.message ?? reason}`);
    });
  };

  const onKeyDown = (event: React.KeyboardEvent<HTMLTextAreaElement>) => {
    if (candidates.length) {
      if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
        event.preventDefault();
        const step = event.key === 'ArrowDown' ? 1 : -1;
        setPicked(p => (p + step + candidates.length) % candidates.length);
        return;
      }
      if (event.key === 'Enter' || event.key === 'Tab') {
        event.preventDefault();
        complete(candidates[Math.min(picked, candidates.length - 1)]);
        return;
      }
      if (event.key === 'Escape') {
        event.preventDefault();
        setDismissed(query?.start);
        return;
      }
    }
    if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
      event.preventDefault();
      send();
    }
  };

  return (
    <form
      className="nyo-chat-form"
      onSubmit={event => {
        event.preventDefault();
        send();
      }}
    >
      {candidates.length > 0 && (
        <ul className="nyo-mention-list" role="listbox" aria-label="Mention someone">
          {candidates.map((person, index) => (
            <li
              key={person.userId}
              role="option"
              aria-selected={index === picked}
              className={`nyo-mention${index === picked ? ' nyo-mod-picked' : ''}`}
              data-user-id={person.userId}
              title={person.userId}
              // mousedown, not click: the box keeps focus and the caret.
              onMouseDown={event => {
                event.preventDefault();
                complete(person);
              }}
            >
              {labelled(person.name, person.userId, people)}
            </li>
          ))}
        </ul>
      )}
      <textarea
        ref={box}
        className="nyo-chat-input"
        rows={2}
        maxLength={MAX_CHAT_LENGTH}
        placeholder="Message everyone (@ to mention)"
        title="Markdown. Enter sends, Shift+Enter starts a new line, @ mentions someone."
        aria-label="Chat message"
        value={text}
        onChange={event => {
          setText(event.target.value);
          setCaret(event.target.selectionStart);
          setPicked(0);
        }}
        onSelect={event => setCaret(event.currentTarget.selectionStart)}
        onKeyDown={onKeyDown}
      />
      <button className="nyo-chat-send jp-mod-styled jp-mod-accept" type="submit">
        Send
      </button>
      <div className="nyo-chat-error">{error}</div>
    </form>
  );
}

export function Chat(props: {
  realtime: IRealtime;
  model: RealtimeModel;
  members: readonly Member[];
  renderMarkdown?: MarkdownRenderer;
}): React.ReactElement {
  const { realtime, model, members, renderMarkdown } = props;
  // The model holds the lobby with its history from the start, so a panel
  // opened later still shows what was said before.
  const { messages, send } = useChannel(realtime, realtime.lobby, { history: true });
  const entries = useMemo(
    () =>
      messages
        .map(chatEntryOf)
        .filter((entry): entry is ChatEntry => entry !== undefined),
    [messages]
  );
  const me = model.me;
  const myself = me && { userId: me.userId, name: model.nameOf(me.userId) };

  // Follow the newest line while the reader is at the bottom; leave the log be
  // if they scrolled up. Not on new entries alone: a message grows after React
  // has rendered it (the Markdown renderer is asynchronous), and a hidden log
  // has no height to scroll. Whenever the log or what is in it changes size
  // (a message filled in, the panel shown again), it goes back to the bottom.
  const log = useRef<HTMLOListElement>(null);
  const atBottom = useRef(true);
  const lastTop = useRef(0);
  useLayoutEffect(() => {
    const node = log.current;
    if (!node) {
      return;
    }
    const follow = () => {
      if (atBottom.current && node.clientHeight > 0) {
        node.scrollTop = node.scrollHeight;
      }
    };
    follow();
    if (typeof ResizeObserver === 'undefined') {
      return;
    }
    const observer = new ResizeObserver(follow);
    observer.observe(node);
    for (const child of Array.from(node.children)) {
      observer.observe(child);
    }
    return () => observer.disconnect();
  }, [entries]);

  return (
    <section className="nyo-chat">
      <h2 className="nyo-panel-title">Chat</h2>
      <ol
        className="nyo-chat-log"
        aria-live="polite"
        ref={log}
        onScroll={() => {
          const node = log.current!;
          // Hidden (no height): nobody scrolled.
          if (node.clientHeight === 0) {
            return;
          }
          // Only scrolling up leaves the bottom: a message that grew after we
          // scrolled down moves the bottom away without anyone scrolling.
          if (node.scrollHeight - node.scrollTop - node.clientHeight < 20) {
            atBottom.current = true;
          } else if (node.scrollTop < lastTop.current) {
            atBottom.current = false;
          }
          lastTop.current = node.scrollTop;
        }}
      >
        {entries.map(entry => (
          <ChatLine
            key={entry.id}
            entry={entry}
            model={model}
            mentionsMe={
              !!myself && entry.userId !== me?.userId && mentions(entry.text, myself)
            }
            renderMarkdown={renderMarkdown}
          />
        ))}
      </ol>
      <Composer
        people={members}
        me={me?.userId}
        onSend={text => send(CHAT_EVENT, { text })}
      />
    </section>
  );
}
