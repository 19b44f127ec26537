/**
 * What the HSM tells its observers: every use of a key (for the audit log
 * and the metrics) and every change of availability (for the log and the
 * metrics). Listeners never break the operation they hear about.
 */

/** One use of a key on the HSM, for the audit log. */
export interface KeyUseEvent {
  label: string;
  operation: "sign" | "generate" | "destroy" | "encrypt" | "decrypt";
  /** The key's CKA_ID, hex, when known (it is not when the key was not found). */
  id?: string;
  ok: boolean;
  ms: number;
  /**
   * Why it failed: the PKCS#11 return code's name (CKR_...), or hsm-ca's own
   * message for a missing key or an unavailable HSM, or the error's class
   * name for anything else. Never a PIN, never key material.
   */
  error?: string;
}

export type KeyUseListener = (event: KeyUseEvent) => void;

/** The HSM became unavailable (with the reason) or available again. */
export type AvailabilityEvent = { available: true; downMs: number } | { available: false; reason: string };
export type AvailabilityListener = (event: AvailabilityEvent) => void;

/** Subscriptions; each returns its unsubscribe. */
export interface KeyEvents {
  /** Called after every sign, generate, destroy, encrypt and decrypt that reached the token. */
  onKeyUse(listener: KeyUseListener): () => void;
  /** Called when the HSM becomes unavailable and when it is back. */
  onAvailability(listener: AvailabilityListener): () => void;
}

/** The listeners of one HSM connection, and the emitting side. */
export class HsmEvents implements KeyEvents {
  private readonly keyUseListeners = new Set<KeyUseListener>();
  private readonly availabilityListeners = new Set<AvailabilityListener>();

  onKeyUse(listener: KeyUseListener): () => void {
    this.keyUseListeners.add(listener);
    return () => this.keyUseListeners.delete(listener);
  }

  onAvailability(listener: AvailabilityListener): () => void {
    this.availabilityListeners.add(listener);
    return () => this.availabilityListeners.delete(listener);
  }

  keyUsed(event: KeyUseEvent): void {
    event.ms = Math.round(event.ms * 1000) / 1000;
    if (event.id === undefined) delete event.id;
    for (const listener of this.keyUseListeners) {
      try {
        listener(event);
      } catch {
        // a listener never breaks a signature
      }
    }
  }

  availabilityChanged(event: AvailabilityEvent): void {
    for (const listener of this.availabilityListeners) {
      try {
        listener(event);
      } catch {
        // nor a change of state
      }
    }
  }
}
