// A conversation with the assistant over the gateway's /ws, for the /chat page and the console's
// chat. The login cookie authenticates the same-origin socket. Frames are the WebSocket channel's
// contract (ARCHITECTURE.md): `{type: "message", id, text, chat}` out; `reply.delta` frames, then
// one `reply` or an `error`, back with the same id. A dropped socket is opened again 2 s later,
// until close().
const RETRY_MS = 2000;

export function socketUrl(path) {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  return `${proto}://${location.host}${path}`;
}

// options:
//   chat       the conversation's chat name; idPrefix: how this page's message ids start
//   log        the element the replies are in: kept scrolled to its end as they grow
//   onStatus   (connected) when the socket opens (true) or drops (false)
//   newReply   () -> the element a reply streams into, made on the reply's first frame
//   endReply   (element, answer) when it is complete; answer: {text, msgId, error}
// Returns {send(text, onAnswer?) -> the message's id, or null when not connected; close()}.
// With onAnswer, that message's reply is not streamed: onAnswer(answer) gets it whole.
export function connectChat({chat, idPrefix, log, onStatus, newReply, endReply}) {
  const streams = new Map(); // id -> the element its reply streams into
  const takers = new Map(); // id -> onAnswer, for a reply the page handles itself
  let socket = null;
  let closed = false;
  let counter = 0;

  function receive(frame) {
    if (frame.type === "reply.delta") {
      if (takers.has(frame.id)) return;
      let el = streams.get(frame.id);
      if (!el) { el = newReply(); streams.set(frame.id, el); }
      el.append(frame.text);
    } else if (frame.type === "reply" || frame.type === "error") {
      const error = frame.type === "error";
      const answer = {text: error ? frame.message : frame.text, msgId: frame.msg_id || "", error};
      const take = takers.get(frame.id);
      takers.delete(frame.id);
      if (take) { take(answer); return; }
      const el = streams.get(frame.id) || newReply();
      streams.delete(frame.id);
      endReply(el, answer);
    }
  }

  function connect() {
    if (closed) return;
    socket = new WebSocket(socketUrl("/ws"));
    socket.onopen = () => onStatus(true);
    socket.onclose = () => {
      if (closed) return;
      onStatus(false);
      setTimeout(connect, RETRY_MS);
    };
    socket.onmessage = (event) => {
      receive(JSON.parse(event.data));
      log.scrollTop = log.scrollHeight;
    };
  }

  connect();
  return {
    send(text, onAnswer) {
      if (!socket || socket.readyState !== WebSocket.OPEN) return null;
      const id = `${idPrefix}-${Date.now()}-${counter++}`;
      if (onAnswer) takers.set(id, onAnswer);
      socket.send(JSON.stringify({type: "message", id, text, chat}));
      return id;
    },
    close() {
      closed = true;
      if (socket) socket.close();
    },
  };
}
