CREATE TABLE "ca_cross_certificates" (
	"id" serial PRIMARY KEY NOT NULL,
	"ca_id" integer NOT NULL,
	"issuer_ca_id" integer NOT NULL,
	"certificate_pem" text NOT NULL,
	"serial" text NOT NULL,
	"fingerprint_sha256" text NOT NULL,
	"not_before" timestamp with time zone NOT NULL,
	"not_after" timestamp with time zone NOT NULL,
	"revoked_at" timestamp with time zone,
	"revocation_reason" smallint,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "pending_cas" (
	"id" serial PRIMARY KEY NOT NULL,
	"subject" text NOT NULL,
	"key_label" text NOT NULL,
	"key_id" text NOT NULL,
	"key_algorithm" text NOT NULL,
	"key_origin" text DEFAULT 'generated' NOT NULL,
	"csr_pem" text NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"completed_ca_id" integer,
	"completed_at" timestamp with time zone,
	CONSTRAINT "pending_cas_key_label_unique" UNIQUE("key_label")
);
--> statement-breakpoint
ALTER TABLE "cas" ADD COLUMN "key_origin" text DEFAULT 'generated' NOT NULL;--> statement-breakpoint
ALTER TABLE "ca_cross_certificates" ADD CONSTRAINT "ca_cross_certificates_ca_id_cas_id_fk" FOREIGN KEY ("ca_id") REFERENCES "public"."cas"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ca_cross_certificates" ADD CONSTRAINT "ca_cross_certificates_issuer_ca_id_cas_id_fk" FOREIGN KEY ("issuer_ca_id") REFERENCES "public"."cas"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pending_cas" ADD CONSTRAINT "pending_cas_completed_ca_id_cas_id_fk" FOREIGN KEY ("completed_ca_id") REFERENCES "public"."cas"("id") ON DELETE no action ON UPDATE no action;