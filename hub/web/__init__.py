"""The hub's web: an aiohttp app factory, a route table, thin views over the repository.
All logic stays in the engine and the store; views only read, call and render."""
