"""Front-end-neutral command handlers: turn raw options into validated requests and results into replies."""
