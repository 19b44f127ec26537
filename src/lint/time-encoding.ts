import type { Violation } from "./lint-failure.ts";

/**
 * RFC 5280 §4.1.2.5: dates through 2049 as UTCTime, from 2050 on as
 * GeneralizedTime. Also: whole seconds (DER has no fraction in either).
 */
/** A Time as either decoder gives it (@peculiar/asn1-x509's, or src/lint/decoded-certificate.ts's; undefined: neither kind in DER form). */
export interface TimeChoice {
  utcTime?: Date;
  generalTime?: Date;
}

export function checkTime(name: string, time: TimeChoice | undefined, out: Violation[]): Date | undefined {
  const date = time?.utcTime ?? time?.generalTime;
  if (!date || Number.isNaN(date.getTime())) {
    out.push({ rule: "time-encoding", detail: `${name} is not a time` });
    return undefined;
  }
  const year = date.getUTCFullYear();
  if (year < 2050 && !time!.utcTime) out.push({ rule: "time-encoding", detail: `${name} ${date.toISOString()} is a GeneralizedTime before 2050 (UTCTime required)` });
  if (year >= 2050 && !time!.generalTime) out.push({ rule: "time-encoding", detail: `${name} ${date.toISOString()} is a UTCTime from 2050 on (GeneralizedTime required)` });
  if (date.getUTCMilliseconds() !== 0) out.push({ rule: "time-encoding", detail: `${name} has a fraction of a second` });
  return date;
}
