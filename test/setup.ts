// @peculiar/x509's CommonJS build needs the Reflect metadata polyfill loaded
// first; the executable does the same in src/main.ts.
import "reflect-metadata";
