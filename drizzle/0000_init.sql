CREATE TABLE "api_tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"secret_sha256" text NOT NULL,
	"role" text NOT NULL,
	"profiles" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"description" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "api_tokens_secret_sha256_unique" UNIQUE("secret_sha256")
);
--> statement-breakpoint
CREATE TABLE "cas" (
	"id" serial PRIMARY KEY NOT NULL,
	"role" text NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"subject" text NOT NULL,
	"key_label" text NOT NULL,
	"key_id" text NOT NULL,
	"key_algorithm" text NOT NULL,
	"certificate_pem" text NOT NULL,
	"serial" text NOT NULL,
	"fingerprint_sha256" text NOT NULL,
	"spki_sha256" text NOT NULL,
	"parent_id" integer,
	"not_before" timestamp with time zone NOT NULL,
	"not_after" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "cas_key_label_unique" UNIQUE("key_label")
);
--> statement-breakpoint
CREATE TABLE "ceremonies" (
	"id" serial PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"transcript" jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "certificates" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"serial" text NOT NULL,
	"issuer_id" integer NOT NULL,
	"profile" text NOT NULL,
	"subject" text NOT NULL,
	"sans" jsonb NOT NULL,
	"status" text DEFAULT 'valid' NOT NULL,
	"not_before" timestamp with time zone NOT NULL,
	"not_after" timestamp with time zone NOT NULL,
	"certificate_pem" text NOT NULL,
	"fingerprint_sha256" text NOT NULL,
	"spki_sha256" text NOT NULL,
	"requested_by" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "certificates_serial_unique" UNIQUE("serial")
);
--> statement-breakpoint
ALTER TABLE "certificates" ADD CONSTRAINT "certificates_issuer_id_cas_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "public"."cas"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "certificates_profile_status_idx" ON "certificates" USING btree ("profile","status","id");