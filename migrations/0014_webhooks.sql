-- Webhooks and recipients per job (§20).
--
-- A webhook alert is a row of manage.mail_queue like a mail: recipient
-- 'webhook:NAME', subject the mail's subject, body the JSON payload, no
-- sender. It is durable in the same way, delivered by send_queued_mail under
-- the same advisory lock (so never twice by concurrent senders), kept with
-- its attempts and last error until the receiver answers 2xx, and listed by
-- `manage mail queue`. The webhook's URL and secret are not stored: the
-- sender reads them from its configuration by name, so a secret never
-- reaches the database and a corrected URL applies to what is queued.
--
-- A job's `notify` is declared like `runs_on`: the file's value is synced
-- into builtin_notify, `jobs configure --notify` writes override_notify.
-- NULL in both: the global recipient (notifications.email); an empty array
-- is "nobody".
ALTER TABLE manage.jobs
    ADD COLUMN builtin_notify text[] NULL,
    ADD COLUMN override_notify text[] NULL;
