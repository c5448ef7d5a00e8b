import { Router } from 'express';
import type { JobService } from '../../jobs/job-service.ts';

export function jobRoutes(jobs: JobService): Router {
  const router = Router();
  router.put('/jobs/start', async (req, res) => {
    res.json({ jobs: await jobs.start(req.body?.name) });
  });
  router.put('/jobs/stop', async (req, res) => {
    res.json({ jobs: await jobs.stop(req.body?.name) });
  });
  router.get('/jobs', async (_req, res) => {
    res.json({ jobs: await jobs.list() });
  });
  router.post('/jobs', async (req, res) => {
    res.status(201).json(await jobs.create(req.body));
  });
  router.get('/jobs/:name', async (req, res) => {
    res.json(await jobs.get(req.params.name));
  });
  router.patch('/jobs/:name', async (req, res) => {
    res.json(await jobs.update(req.params.name, req.body));
  });
  return router;
}
