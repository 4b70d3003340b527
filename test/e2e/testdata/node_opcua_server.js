// An OPC UA server this project did not write, for the end-to-end tests:
// node-opcua with security None, Basic256Sha256 and Aes256_Sha256_RsaPss
// (Sign, SignAndEncrypt), users
// checked by name and password, at most 8 monitored items per
// subscription, the test namespace at index 3, a variable
// of every built-in scalar type with a fixed source time, a counter, and a
// node whose status turns bad every other second.
//
// Usage: node node_opcua_server.js <port> <pki dir>
// Prints "ready" on stdout once it listens. SIGUSR2 closes every session
// and its subscriptions, as a session timeout does (the clients' next
// requests get BadSessionIdInvalid), and prints "sessions closed N".
"use strict";
const {
  OPCUAServer, OPCUACertificateManager, Variant, DataType, StatusCodes,
  SecurityPolicy, MessageSecurityMode, LocalizedText, coerceNodeId, VariantArrayType,
} = require("node-opcua");

const port = Number(process.argv[2]);
const pki = process.argv[3];
const FIXED_TIME = new Date("2026-11-26T07:00:00.000Z");

function int64(v) {
  const u = BigInt.asUintN(64, v);
  return [Number(u >> 32n), Number(u & 0xffffffffn)];
}

// name, data type, value: the Go test expects the same values.
const scalars = [
  ["Boolean", DataType.Boolean, true],
  ["SByte", DataType.SByte, -128],
  ["Byte", DataType.Byte, 255],
  ["Int16", DataType.Int16, -32768],
  ["UInt16", DataType.UInt16, 65535],
  ["Int32", DataType.Int32, -2147483648],
  ["UInt32", DataType.UInt32, 4294967295],
  ["Int64", DataType.Int64, int64(-9007199254740993n)],
  ["UInt64", DataType.UInt64, int64(18446744073709551614n)],
  ["Float", DataType.Float, 0.1],
  ["Double", DataType.Double, -9876.54321],
  ["String", DataType.String, "Grüße, \"OPC\" ☃"],
  ["DateTime", DataType.DateTime, new Date("2026-11-26T08:00:00.123Z")],
  ["Guid", DataType.Guid, "72962B91-FA75-4AE6-8D28-B404DC7DAF63"],
  ["ByteString", DataType.ByteString, Buffer.from([0, 1, 2, 254, 255])],
  ["XmlElement", DataType.XmlElement, "<a>1</a>"],
  ["NodeId", DataType.NodeId, coerceNodeId("ns=3;s=x")],
  ["StatusCode", DataType.StatusCode, StatusCodes.BadOutOfRange],
  ["QualifiedName", DataType.QualifiedName, { namespaceIndex: 3, name: "q" }],
  ["LocalizedText", DataType.LocalizedText, new LocalizedText({ locale: "de", text: "Druck" })],
];

async function main() {
  const server = new OPCUAServer({
    port,
    resourcePath: "",
    serverCertificateManager: new OPCUACertificateManager({
      automaticallyAcceptUnknownCertificate: true,
      rootFolder: pki,
    }),
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256, SecurityPolicy.Aes256_Sha256_RsaPss],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: false,
    // Users by certificate: any certificate is accepted once its holder
    // proves it has the key (the signature of the server's nonce).
    userCertificateManager: new OPCUACertificateManager({
      automaticallyAcceptUnknownCertificate: true,
      rootFolder: pki + "-users",
    }),
    // A small cap, so that the agent must split its items over several
    // subscriptions.
    serverCapabilities: { maxMonitoredItemsPerSubscription: 8 },
    userManager: {
      isValidUser: (user, password) => user === "gw" && password === "right-pass",
    },
  });
  await server.initialize();
  const as = server.engine.addressSpace;
  as.registerNamespace("urn:e2e:spare"); // so that the test namespace is not at 2
  const ns = as.registerNamespace("urn:e2e:plc");
  const line = ns.addObject({ organizedBy: as.rootFolder.objects, browseName: "Line1", nodeId: "s=Line1" });
  for (const [name, dataType, value] of scalars) {
    const v = ns.addVariable({ componentOf: line, browseName: name, nodeId: "s=Line1." + name, dataType });
    v.setValueFromSource(new Variant({ dataType, value, arrayType: VariantArrayType.Scalar }), StatusCodes.Good, FIXED_TIME);
  }
  const counter = ns.addVariable({ componentOf: line, browseName: "Counter", nodeId: "s=Line1.Counter", dataType: DataType.UInt32 });
  let n = 0;
  counter.setValueFromSource(new Variant({ dataType: DataType.UInt32, value: n }), StatusCodes.Good, new Date());
  const flaky = ns.addVariable({ componentOf: line, browseName: "Flaky", nodeId: "s=Line1.Flaky", dataType: DataType.Double });
  let bad = false;
  flaky.setValueFromSource(new Variant({ dataType: DataType.Double, value: 21.5 }), StatusCodes.Good, new Date());
  setInterval(() => {
    n++;
    counter.setValueFromSource(new Variant({ dataType: DataType.UInt32, value: n }), StatusCodes.Good, new Date());
  }, 100);
  setInterval(() => {
    bad = !bad;
    // A bad status comes with a value that must never be taken as a reading.
    flaky.setValueFromSource(new Variant({ dataType: DataType.Double, value: bad ? 9999 : 21.5 }),
      bad ? StatusCodes.BadSensorFailure : StatusCodes.Good, new Date());
  }, 1000);
  await server.start();
  console.log("ready");
  const stop = async () => { await server.shutdown(0); process.exit(0); };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.on("SIGUSR2", () => {
    const engine = server.engine;
    const tokens = Object.values(engine._sessions).map((s) => s.authenticationToken);
    for (const token of tokens) {
      engine.closeSession(token, true, "Timeout");
    }
    console.log("sessions closed " + tokens.length);
  });
}

main().catch((err) => { console.error(err); process.exit(1); });
