import * as graphene from "graphene-pk11";

/**
 * Small private token objects (CKO_DATA) that hold a value hsm-ca must keep
 * outside the database, such as the audit anchor. They can be read and
 * written only by a session logged in with the user PIN, and a user sees
 * them with `pkcs11-tool --login --list-objects --type data`.
 */
const APPLICATION = "hsm-ca";

/** The values of the token's data objects with this label, as found (normally one). */
export function readDataObjects(session: graphene.Session, label: string): Buffer[] {
  const found = session.find({ class: graphene.ObjectClass.DATA, label, token: true });
  const values: Buffer[] = [];
  for (let i = 0; i < found.length; i++) values.push(Buffer.from(found.items(i).getAttribute("value") as Buffer));
  return values;
}

/**
 * Makes value the data object with this label. PKCS#11 tokens (SoftHSM2
 * among them) keep CKA_VALUE of a data object read-only, so the new object
 * is created first and the ones before it destroyed after: an interruption
 * in between leaves two objects, never none, and the next write removes the
 * older one.
 */
export function replaceDataObject(session: graphene.Session, label: string, value: Buffer): void {
  const before = session.find({ class: graphene.ObjectClass.DATA, label, token: true });
  const old: graphene.SessionObject[] = [];
  for (let i = 0; i < before.length; i++) old.push(before.items(i));
  session.create({
    class: graphene.ObjectClass.DATA,
    token: true,
    private: true,
    modifiable: true,
    label,
    application: APPLICATION,
    value,
  });
  for (const obj of old) obj.destroy();
}
