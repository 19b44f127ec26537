/**
 * A certificate from outside (an external root, the intermediate it signed,
 * the certificates between them) that hsm-ca will not use, or a step of the
 * external-root ceremonies that cannot be taken now. The message is one
 * line that names what is wrong; nothing was changed.
 */
export class ExternalCaError extends Error {}
