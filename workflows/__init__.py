"""FireWorks FireTasks and workflow builders."""
