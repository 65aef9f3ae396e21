-- view: kks_sale_items
-- description: Item lines of the window's KKS purchases that were not reversed.
SELECT i.*
FROM transaction_items i
JOIN kks_purchases p ON p.bank = i.bank AND p.txn_id = i.txn_id
