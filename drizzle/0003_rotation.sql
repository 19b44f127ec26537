CREATE TABLE "rotation_ticks" (
	"tick" timestamp with time zone PRIMARY KEY NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "cas" ADD COLUMN "key_destroyed_at" timestamp with time zone;