-- view: kks_purchases
-- description: KKS purchases of the window that were not reversed afterwards: what KPM really paid for. Every rule about what KPM bought starts here, so a reversal is handled once.
WITH reversed AS (
    SELECT DISTINCT bank, reverses_txn_id AS txn_id
    FROM transactions
    WHERE type = 'reversal' AND reverses_txn_id IS NOT NULL
)
SELECT t.*
FROM transactions t
LEFT JOIN reversed r ON r.bank = t.bank AND r.txn_id = t.txn_id
WHERE t.payment = 'KKS' AND t.type = 'purchase' AND r.txn_id IS NULL
