CREATE TABLE "blocked_keys" (
	"spki_sha256" text PRIMARY KEY NOT NULL,
	"reason" text NOT NULL,
	"serial" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "crl_numbers" (
	"issuer_id" integer PRIMARY KEY NOT NULL,
	"last" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "crls" (
	"issuer_id" integer NOT NULL,
	"partition" integer NOT NULL,
	"kind" text NOT NULL,
	"crl_number" bigint NOT NULL,
	"base_crl_number" bigint,
	"covers_until" timestamp with time zone NOT NULL,
	"this_update" timestamp with time zone NOT NULL,
	"next_update" timestamp with time zone NOT NULL,
	"entries" integer NOT NULL,
	"der" "bytea" NOT NULL,
	CONSTRAINT "crls_issuer_id_partition_kind_pk" PRIMARY KEY("issuer_id","partition","kind")
);
--> statement-breakpoint
CREATE TABLE "ocsp_responders" (
	"id" serial PRIMARY KEY NOT NULL,
	"issuer_id" integer NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"key_label" text NOT NULL,
	"key_algorithm" text NOT NULL,
	"certificate_pem" text NOT NULL,
	"not_before" timestamp with time zone NOT NULL,
	"not_after" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "ocsp_responders_key_label_unique" UNIQUE("key_label")
);
--> statement-breakpoint
CREATE TABLE "ocsp_responses" (
	"serial" text PRIMARY KEY NOT NULL,
	"issuer_id" integer NOT NULL,
	"status" text NOT NULL,
	"this_update" timestamp with time zone NOT NULL,
	"next_update" timestamp with time zone NOT NULL,
	"der" "bytea" NOT NULL
);
--> statement-breakpoint
ALTER TABLE "cas" ADD COLUMN "revoked_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "cas" ADD COLUMN "revocation_reason" smallint;--> statement-breakpoint
ALTER TABLE "certificates" ADD COLUMN "invalidity_date" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "certificates" ADD COLUMN "revoked_by" text;--> statement-breakpoint
ALTER TABLE "certificates" ADD COLUMN "crl_partition" integer;--> statement-breakpoint
ALTER TABLE "crl_numbers" ADD CONSTRAINT "crl_numbers_issuer_id_cas_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "public"."cas"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "crls" ADD CONSTRAINT "crls_issuer_id_cas_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "public"."cas"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ocsp_responders" ADD CONSTRAINT "ocsp_responders_issuer_id_cas_id_fk" FOREIGN KEY ("issuer_id") REFERENCES "public"."cas"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "ocsp_responses_next_update_idx" ON "ocsp_responses" USING btree ("next_update");--> statement-breakpoint
CREATE INDEX "certificates_revoked_idx" ON "certificates" USING btree ("issuer_id","revoked_at");