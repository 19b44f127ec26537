ALTER TABLE "certificates" ADD COLUMN "ocsp_pending" boolean DEFAULT true NOT NULL;--> statement-breakpoint
-- Certificates that already have a response of the right status, and expired ones, need nothing: only the rest start pending.
UPDATE "certificates" SET "ocsp_pending" = false WHERE "not_after" <= now() OR EXISTS (SELECT 1 FROM "ocsp_responses" r WHERE r."serial" = "certificates"."serial" AND (r."status" = 'revoked') = ("certificates"."status" = 'revoked'));--> statement-breakpoint
CREATE INDEX "certificates_ocsp_pending_idx" ON "certificates" USING btree ("id") WHERE "certificates"."ocsp_pending";
