// Peer for bench/peers.py: socket.io 4 (websocket transport) doing what
// bench/sio_server.py does: `subscribe` joins a room; `broadcast` emits the
// nyo-realtime envelope to the room and acks with an id.
//   node bench/node_sio_server.js PORT
"use strict";
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const io = new Server(port, { transports: ["websocket"], perMessageDeflate: false });
let nextId = 1;

io.on("connection", (socket) => {
  socket.on("subscribe", (channel, ack) => {
    socket.join(channel);
    if (typeof ack === "function") ack(true);
  });
  socket.on("broadcast", (data, ack) => {
    const id = `m-${nextId++}`;
    socket.to(data.channel).emit("message", {
      channel: data.channel, id, event: data.event, payload: data.payload,
      from: { connectionId: socket.id }, ts: Date.now(),
    });
    if (typeof ack === "function") ack(id);
  });
});
process.on("SIGTERM", () => io.close(() => process.exit(0)));
console.log(`socket.io listening on 127.0.0.1:${port}`);
