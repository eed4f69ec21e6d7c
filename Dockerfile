# gpu-gatekeeper: one image, every role (choose with GATEKEEPER_ROLES).
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY queues ./queues
COPY src ./src
COPY workers ./workers
COPY dashboard ./dashboard
COPY bin ./bin
# The CLI on PATH: `docker compose exec app gatekeeper held list` (it talks to this container's API).
RUN chmod 755 bin/gatekeeper.mjs && ln -s /app/bin/gatekeeper.mjs /usr/local/bin/gatekeeper
ENV NODE_ENV=production
USER node
EXPOSE 3000
# --max-semi-space-size=64: the young generation the admission path needs (docs/operations.md, "Node flags").
CMD ["node", "--max-semi-space-size=64", "--import", "tsx", "src/main.ts"]
