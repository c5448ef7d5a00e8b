-- migrate:up

-- A replay must answer the original body byte for byte. jsonb normalises
-- key order (the replayed Message came back as {"id","to","sendAt",…} in
-- jsonb's order); json keeps the text exactly as it was written.
ALTER TABLE idempotency_keys ALTER COLUMN response_body TYPE json USING response_body::json;
