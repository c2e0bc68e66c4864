"""The Digital River adapter: the httpx2 client and one batch's delivery trip."""
