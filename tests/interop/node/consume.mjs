// Subscribe to an SSE URL with the npm `eventsource` package and print what it sees as JSON lines.
//
// Usage: node consume.mjs URL [TYPES_JSON]
//   TYPES_JSON: a JSON array of custom event types to listen for besides "message".
// Prints {"kind":"event","type","data","id"} per event, {"kind":"open"} on each (re)connection and
// {"kind":"error",...} on each error. Closes the EventSource and exits when stdin ends.
import { EventSource } from "eventsource";

const [url, typesJson] = process.argv.slice(2);
if (!url) {
  process.stderr.write("usage: node consume.mjs URL [TYPES_JSON]\n");
  process.exit(2);
}
const types = JSON.parse(typesJson ?? "[]");

const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const report = (event) =>
  print({ kind: "event", type: event.type, data: event.data, id: event.lastEventId });

const source = new EventSource(url);
source.addEventListener("message", report);
for (const type of types) source.addEventListener(type, report);
source.addEventListener("open", () => print({ kind: "open" }));
source.addEventListener("error", (event) =>
  print({
    kind: "error",
    code: event.code ?? null,
    message: event.message ?? null,
    readyState: source.readyState,
  }),
);

process.stdin.on("end", () => {
  source.close();
  process.exit(0);
});
process.stdin.resume();
