-- A sign-in link works only in the browser that asked for it: the pepper digest of that
-- browser's CSRF cookie, checked when the link is opened and when it is used. Other links
-- (reset, address) leave it empty.
ALTER TABLE email_links ADD COLUMN browser_digest TEXT;
