CREATE TABLE "vault_approles" (
	"id" text PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"role_id" text NOT NULL,
	"secret_id_sha256" text NOT NULL,
	"profiles" jsonb NOT NULL,
	"token_ttl_seconds" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "vault_approles_role_id_unique" UNIQUE("role_id")
);
--> statement-breakpoint
CREATE TABLE "vault_client_tokens" (
	"id" text PRIMARY KEY NOT NULL,
	"secret_sha256" text NOT NULL,
	"approle_id" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "vault_client_tokens_secret_sha256_unique" UNIQUE("secret_sha256")
);
--> statement-breakpoint
ALTER TABLE "vault_client_tokens" ADD CONSTRAINT "vault_client_tokens_approle_id_vault_approles_id_fk" FOREIGN KEY ("approle_id") REFERENCES "public"."vault_approles"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "vault_client_tokens_expires_idx" ON "vault_client_tokens" USING btree ("expires_at");