/** Absolute URLs of one directory's resources, as clients must use them (and sign them). */
export class AcmeUrls {
  readonly base: string;

  constructor(
    readonly origin: string,
    basePath: string,
  ) {
    this.base = origin + basePath;
  }

  directory = () => `${this.base}/directory`;
  newNonce = () => `${this.base}/new-nonce`;
  newAccount = () => `${this.base}/new-account`;
  newOrder = () => `${this.base}/new-order`;
  revokeCert = () => `${this.base}/revoke-cert`;
  keyChange = () => `${this.base}/key-change`;
  renewalInfo = () => `${this.base}/renewal-info`;
  account = (id: string) => `${this.base}/acct/${id}`;
  accountOrders = (id: string) => `${this.base}/acct/${id}/orders`;
  order = (id: string) => `${this.base}/order/${id}`;
  finalize = (id: string) => `${this.base}/order/${id}/finalize`;
  authorization = (id: string) => `${this.base}/authz/${id}`;
  challenge = (id: string) => `${this.base}/chall/${id}`;
  certificate = (serial: string) => `${this.base}/cert/${serial}`;

  /**
   * The account id in a kid, if the kid is one of this directory's account
   * URLs. Only the path counts: replicas behind one name, or reached by
   * different names, share accounts.
   */
  accountIdOf(kid: string): string | undefined {
    let path: string;
    try {
      path = new URL(kid).pathname;
    } catch {
      return undefined;
    }
    const prefix = `${new URL(this.base).pathname}/acct/`;
    if (!path.startsWith(prefix)) return undefined;
    const id = path.slice(prefix.length);
    return /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : undefined;
  }
}
