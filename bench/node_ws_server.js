// Peer for bench/peers.py: the `ws` library with rooms, speaking nyo-realtime's
// JSON frames (subscribe -> subscribed, broadcast -> ack + message to the others in the room).
// No auth, no history, no presence: the cheapest fan-out `ws` allows.
//   node bench/node_ws_server.js PORT
"use strict";
const { WebSocketServer } = require("ws");

const port = Number(process.argv[2]);
const rooms = new Map(); // channel -> Set of sockets
let nextId = 1;
const wss = new WebSocketServer({ port, host: "127.0.0.1", perMessageDeflate: false });

wss.on("connection", (ws) => {
  ws.rooms = [];
  ws.send(JSON.stringify({ type: "authenticated", connectionId: `c-${nextId++}` }));
  ws.on("message", (data) => {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame.type === "subscribe") {
      let room = rooms.get(frame.channel);
      if (!room) rooms.set(frame.channel, (room = new Set()));
      room.add(ws);
      ws.rooms.push(frame.channel);
      ws.send(JSON.stringify({ type: "subscribed", ref: frame.ref, channel: frame.channel }));
    } else if (frame.type === "broadcast") {
      const id = `m-${nextId++}`;
      // Encoded once, the same bytes to every member, as nyo-realtime does.
      const message = JSON.stringify({
        type: "message", channel: frame.channel, id, event: frame.event,
        payload: frame.payload, ts: Date.now(),
      });
      for (const member of rooms.get(frame.channel) || []) if (member !== ws) member.send(message);
      if (frame.ref !== undefined) ws.send(JSON.stringify({ type: "ack", ref: frame.ref, id }));
    } else if (frame.type === "ping") {
      ws.send(JSON.stringify({ type: "pong", ref: frame.ref, ts: Date.now() }));
    }
  });
  ws.on("close", () => {
    for (const name of ws.rooms) rooms.get(name)?.delete(ws);
  });
});
const stop = () => wss.close(() => process.exit(0));
process.on("SIGTERM", () => {
  for (const ws of wss.clients) ws.close(1001, "server shutting down");
  stop();
});
console.log(`ws listening on 127.0.0.1:${port}`);
