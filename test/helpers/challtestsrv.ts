import { spawn, type ChildProcess } from "node:child_process";
import { freePort, waitForPort } from "./ports.ts";

/**
 * pebble-challtestsrv (Debian's pebble package) as a small real DNS server:
 * every A query gets 127.0.0.1, and TXT records are set through its
 * management API. Names like app.example.test resolve for the validator.
 */
export interface DnsServer {
  /** "127.0.0.1:<port>", for HSM_CA_ACME_RESOLVERS and lego --dns.resolvers. */
  address: string;
  managementUrl: string;
  stop(): void;
}

export async function startDnsServer(): Promise<DnsServer> {
  const dnsPort = await freePort();
  const mgmtPort = await freePort();
  const child: ChildProcess = spawn(
    "pebble-challtestsrv",
    ["-dns01", `127.0.0.1:${dnsPort}`, "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", `127.0.0.1:${mgmtPort}`, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
    { stdio: "ignore" },
  );
  await waitForPort(mgmtPort);
  await waitForPort(dnsPort);
  return { address: `127.0.0.1:${dnsPort}`, managementUrl: `http://127.0.0.1:${mgmtPort}`, stop: () => child.kill("SIGKILL") };
}
