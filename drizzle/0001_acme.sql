CREATE TABLE "acme_accounts" (
	"id" text PRIMARY KEY NOT NULL,
	"directory" text NOT NULL,
	"key_thumbprint" text NOT NULL,
	"jwk" jsonb NOT NULL,
	"contact" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"status" text DEFAULT 'valid' NOT NULL,
	"eab_kid" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "acme_authorizations" (
	"id" text PRIMARY KEY NOT NULL,
	"order_id" text NOT NULL,
	"account_id" text NOT NULL,
	"identifier_type" text NOT NULL,
	"identifier_value" text NOT NULL,
	"wildcard" boolean DEFAULT false NOT NULL,
	"status" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "acme_challenges" (
	"id" text PRIMARY KEY NOT NULL,
	"authorization_id" text NOT NULL,
	"type" text NOT NULL,
	"token" text NOT NULL,
	"status" text NOT NULL,
	"validated" timestamp with time zone,
	"error" jsonb
);
--> statement-breakpoint
CREATE TABLE "acme_eab_keys" (
	"kid" text PRIMARY KEY NOT NULL,
	"hmac_key" text NOT NULL,
	"directory" text NOT NULL,
	"description" text,
	"account_id" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"bound_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "acme_nonces" (
	"value" text PRIMARY KEY NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "acme_orders" (
	"id" text PRIMARY KEY NOT NULL,
	"account_id" text NOT NULL,
	"directory" text NOT NULL,
	"status" text NOT NULL,
	"identifiers" jsonb NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"error" jsonb,
	"certificate_serial" text,
	"replaces" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "certificates" ADD COLUMN "revoked_at" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "certificates" ADD COLUMN "revocation_reason" smallint;--> statement-breakpoint
ALTER TABLE "acme_authorizations" ADD CONSTRAINT "acme_authorizations_order_id_acme_orders_id_fk" FOREIGN KEY ("order_id") REFERENCES "public"."acme_orders"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "acme_challenges" ADD CONSTRAINT "acme_challenges_authorization_id_acme_authorizations_id_fk" FOREIGN KEY ("authorization_id") REFERENCES "public"."acme_authorizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "acme_orders" ADD CONSTRAINT "acme_orders_account_id_acme_accounts_id_fk" FOREIGN KEY ("account_id") REFERENCES "public"."acme_accounts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "acme_accounts_directory_key_idx" ON "acme_accounts" USING btree ("directory","key_thumbprint");--> statement-breakpoint
CREATE INDEX "acme_authz_order_idx" ON "acme_authorizations" USING btree ("order_id");--> statement-breakpoint
CREATE INDEX "acme_authz_identifier_idx" ON "acme_authorizations" USING btree ("identifier_value","created_at");--> statement-breakpoint
CREATE INDEX "acme_challenges_authz_idx" ON "acme_challenges" USING btree ("authorization_id");--> statement-breakpoint
CREATE INDEX "acme_orders_account_created_idx" ON "acme_orders" USING btree ("account_id","created_at");--> statement-breakpoint
CREATE INDEX "acme_orders_expires_idx" ON "acme_orders" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "certificates_spki_idx" ON "certificates" USING btree ("spki_sha256");